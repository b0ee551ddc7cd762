module github.com/sagalane/sagalane/bindings/go

go 1.19
