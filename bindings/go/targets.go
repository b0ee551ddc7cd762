package sagalane

// #include "glue.h"
import "C"

import "time"

// TargetOptions configure ConnectTarget. A zero field means its default.
type TargetOptions struct {
	// BufferExpiry is how long a command waits for a connection before its saga fails
	// "host unreachable"; 0 means 30 s.
	BufferExpiry time.Duration
	// MaxBuffered is how many commands may wait at once; past that a new one fails its saga
	// at once. 0 means 65536.
	MaxBuffered int
	// ReconnectMin is the wait after a failed attempt, doubled (with jitter) up to
	// ReconnectMax; 0 means 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration
	// MaxFrame is the largest frame either way, in bytes (at least 64); 0 means 1 MiB.
	MaxFrame int
	// MaxQueuedBytes is how much may be queued for the host before commands wait instead;
	// 0 means 8 MiB.
	MaxQueuedBytes int
}

// TargetStatus is what a pipe target has done so far.
type TargetStatus struct {
	Connected   bool   // a handshaken connection takes its commands now
	Buffered    uint64 // commands waiting for a connection
	Awaiting    uint64 // sent and not yet answered
	Sent        uint64 // written to a connection
	Expired     uint64 // whose wait ran out (their sagas failed "host unreachable")
	Purged      uint64 // waiting ones dropped because their saga ended first
	Connections uint64 // connections made
	BadFrames   uint64 // frames from the host answered with an error
}

// ConnectTarget registers target name (no ':') as a pipe target whose host listens on the
// Unix socket at path (at most 107 bytes), and dials it once the runtime's loop runs, again
// with back-off whenever the connection is lost. The host speaks the agent protocol's
// dialled-target part (docs/protocol.md): it answers hello with welcome, then each command
// frame with step.done or step.failed. Commands that cannot be sent wait, in order, up to
// BufferExpiry; a saga that ends first takes its waiting command back. Before or after
// Start; the connection closes with the runtime. Durations are rounded up to whole
// milliseconds.
func (r *Runtime) ConnectTarget(name, path string, opts TargetOptions) error {
	const fn = "sl_target_connect"
	var c C.sl_target_connect_options
	C.sl_target_connect_options_init(&c)
	ms := func(field string, d time.Duration) (C.uint32_t, error) {
		if d < 0 {
			return 0, errorf(C.SL_EINVAL, fn, "options.%s is negative (%v)", field, d)
		}
		n := (d + time.Millisecond - 1) / time.Millisecond
		if n > 1<<32-1 {
			return 0, errorf(C.SL_EINVAL, fn, "options.%s (%v) is over 2^32-1 ms", field, d)
		}
		return C.uint32_t(n), nil
	}
	count := func(field string, n int) (C.uint32_t, error) {
		if n < 0 || n > 1<<32-1 {
			return 0, errorf(C.SL_EINVAL, fn, "options.%s (%d) is out of range", field, n)
		}
		return C.uint32_t(n), nil
	}
	var err error
	if c.buffer_expiry_ms, err = ms("BufferExpiry", opts.BufferExpiry); err != nil {
		return err
	}
	if c.reconnect_min_ms, err = ms("ReconnectMin", opts.ReconnectMin); err != nil {
		return err
	}
	if c.reconnect_max_ms, err = ms("ReconnectMax", opts.ReconnectMax); err != nil {
		return err
	}
	if c.max_buffered, err = count("MaxBuffered", opts.MaxBuffered); err != nil {
		return err
	}
	if c.max_frame, err = count("MaxFrame", opts.MaxFrame); err != nil {
		return err
	}
	if c.max_queued_bytes, err = count("MaxQueuedBytes", opts.MaxQueuedBytes); err != nil {
		return err
	}
	cname, err := cString(fn, "target name", name)
	if err != nil {
		return err
	}
	defer freeAll(cname)
	cpath, err := cString(fn, "path", path)
	if err != nil {
		return err
	}
	defer freeAll(cpath)
	return r.call(fn, func() C.int { return C.sl_target_connect(r.rt, cname, cpath, &c) })
}

// TargetStatus reports what pipe target name has done so far; ErrNotFound when there is no
// pipe target of that name. Safe from any goroutine (it waits for the loop).
func (r *Runtime) TargetStatus(name string) (TargetStatus, error) {
	const fn = "sl_target_get_status"
	cname, err := cString(fn, "target name", name)
	if err != nil {
		return TargetStatus{}, err
	}
	defer freeAll(cname)
	var c C.sl_target_status
	c.size = C.size_t(C.sizeof_sl_target_status)
	if err := r.call(fn, func() C.int { return C.sl_target_get_status(r.rt, cname, &c) }); err != nil {
		return TargetStatus{}, err
	}
	return TargetStatus{
		Connected:   c.connected != 0,
		Buffered:    uint64(c.buffered),
		Awaiting:    uint64(c.awaiting),
		Sent:        uint64(c.sent),
		Expired:     uint64(c.expired),
		Purged:      uint64(c.purged),
		Connections: uint64(c.connections),
		BadFrames:   uint64(c.bad_frames),
	}, nil
}
