package sagalane

// LiveHandles is how many cgo.Handles the package made and has not deleted yet.
func LiveHandles() int64 { return liveHandles.Load() }

// ErrorName is the name sagalane.h gives code ("SL_EUNKNOWN" for a code it does not have).
func ErrorName(code int) string { return errorName(code) }
