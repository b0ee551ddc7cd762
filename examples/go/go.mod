module github.com/sagalane/sagalane/examples/go

go 1.19

require github.com/sagalane/sagalane/bindings/go v0.0.0

// The binding from this checkout, not a published version.
replace github.com/sagalane/sagalane/bindings/go => ../../bindings/go
