package sagalane

// #include "glue.h"
import "C"

import (
	"context"
	"sync"
	"time"
)

// cancelPollInterval is how often a job context whose Done channel someone waits on reads
// the job's cancellation flag: the C API raises a flag and calls nothing, so a channel can
// only learn of it by looking.
const cancelPollInterval = 10 * time.Millisecond

// jobContext is the context.Context a JobFunc receives. It is done once the job's
// cancellation flag (sl_job_cancelled) is raised, or once the function returned.
//
// Err reads the flag itself, so a job that only checks ctx.Err() costs nothing more. The
// Done channel is made on the first call to Done, and a goroutine then polls the flag until
// it is raised or the function returned; end waits for that goroutine, so none outlives the
// run.
type jobContext struct {
	mu   sync.Mutex
	job  *C.sl_job_ctx // nil once the function returned: the C context is gone then
	err  error
	done chan struct{} // nil until Done is first called

	stop   chan struct{} // closed by end, to stop the poller
	poller sync.WaitGroup
}

func newJobContext(job *C.sl_job_ctx) *jobContext {
	return &jobContext{job: job, stop: make(chan struct{})}
}

// Deadline: a job has none of its own.
func (c *jobContext) Deadline() (deadline time.Time, ok bool) { return time.Time{}, false }

// Value: a job's context carries no values.
func (c *jobContext) Value(key any) any { return nil }

func (c *jobContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && c.job != nil && C.sl_job_cancelled(c.job) != 0 {
		c.cancelLocked()
	}
	return c.err
}

func (c *jobContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		} else {
			c.poller.Add(1)
			go c.poll()
		}
	}
	return c.done
}

func (c *jobContext) String() string { return "sagalane job context" }

func (c *jobContext) cancelLocked() {
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
}

func (c *jobContext) poll() {
	defer c.poller.Done()
	ticker := time.NewTicker(cancelPollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-ticker.C:
			if c.Err() != nil {
				return
			}
		}
	}
}

// end runs once the job's function returned, before the C context goes away: it cancels the
// context, then stops the poller and waits for it. Cancelled first, so that a Done called
// from now on (by a goroutine the job left behind) starts no poller.
func (c *jobContext) end() {
	c.mu.Lock()
	c.job = nil
	if c.err == nil {
		c.cancelLocked()
	}
	c.mu.Unlock()
	close(c.stop)
	c.poller.Wait()
}
