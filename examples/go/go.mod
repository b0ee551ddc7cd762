module sagalane.example/go

go 1.19
