package engine

// deque is a growable ring buffer of sequence slots: the FCFS waiting queue,
// which
// pops from the front, appends arrivals at the back and puts preempted or
// skipped requests back at the front.
type deque struct {
	buf  []int32
	head int
	n    int
}

func (d *deque) len() int { return d.n }

func (d *deque) grow() {
	size := max(2*len(d.buf), 16)
	buf := make([]int32, size)
	for i := range d.n {
		buf[i] = d.buf[(d.head+i)%len(d.buf)]
	}
	d.buf, d.head = buf, 0
}

func (d *deque) pushBack(v int32) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.buf[(d.head+d.n)%len(d.buf)] = v
	d.n++
}

func (d *deque) pushFront(v int32) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
	d.buf[d.head] = v
	d.n++
}

// popFront removes and returns the first element; the caller checks len.
func (d *deque) popFront() int32 {
	v := d.buf[d.head]
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	return v
}
