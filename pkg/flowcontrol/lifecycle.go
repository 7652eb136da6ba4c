package flowcontrol

// Reconfigure applies cfg (a config reload) to the requests waiting and to
// come: limits, TTLs, band templates, the usage limit, the saturation and
// pool-size functions and the observer. The clock, Poll and Settle stay as
// New set them. A band that already has waiting requests keeps its
// ordering and fairness policies until it empties. Requests already over a
// new limit are not evicted; only new ones are refused.
func (c *Controller) Reconfigure(cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	c.cfg.Store(&cfg)
	c.Wake()
	return nil
}

// Wake asks the dispatcher to re-read saturation now (a request finished,
// metrics were scraped). It never blocks.
func (c *Controller) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Stop refuses everything still waiting with RejectedShuttingDown, and
// every later Admit, and stops the dispatcher. It may be called more than
// once, and before Start.
func (c *Controller) Stop() {
	noEndpoints := c.conf().PoolSize() == 0
	c.mu.Lock()
	now := c.now()
	c.stopped = true
	c.closed.Store(true)
	for it := c.oldest; it != nil; it = c.oldest {
		c.remove(it)
		err := shutdownError(it.q.FlowID, it.q.Priority, true, now.Sub(it.q.Enqueued))
		err.NoEndpoints = noEndpoints
		it.done <- err
	}
	c.mu.Unlock()
	c.stopOnce.Do(func() { close(c.quit) })
}

// Waiting reports the number of requests and bytes queued now.
func (c *Controller) Waiting() (requests int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.requests), c.bytes
}
