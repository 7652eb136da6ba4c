package flowcontrol

import "time"

// awaitSettled waits until the request just released is scheduled, or the
// settle bound passes; false means the controller stopped.
func (c *Controller) awaitSettled(settle *time.Timer) bool {
	if c.settle < 0 {
		return true
	}
	settle.Reset(c.settle)
	defer settle.Stop()
	select {
	case <-c.settled:
	case <-settle.C:
	case <-c.quit:
		return false
	}
	return true
}

// Settled tells the dispatcher that a request AdmitQueued released from a
// queue has been scheduled (its load is now visible to the saturation
// detector) or failed to be; call it once per such request. It never
// blocks.
func (c *Controller) Settled() {
	select {
	case c.settled <- struct{}{}:
	default:
	}
}
