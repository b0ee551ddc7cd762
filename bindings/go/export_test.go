package sagalane

// LiveHandles is how many cgo.Handles the package made and has not deleted yet.
func LiveHandles() int64 { return liveHandles.Load() }
