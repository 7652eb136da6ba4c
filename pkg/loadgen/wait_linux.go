package loadgen

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timerfdWaiter waits on a Linux timerfd read through the runtime's
// netpoller: the kernel's high-resolution timer makes the fd readable, which
// ends the netpoller's wait at once, so wake-ups are accurate to tens of
// microseconds instead of the Go timer's millisecond, without spinning.
type timerfdWaiter struct {
	f   *os.File
	buf [8]byte
}

// newWaiter returns a timerfd waiter, or a Go timer one when timerfd is
// unavailable.
func newWaiter() waiter {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return timerWaiter{}
	}
	// A non-blocking fd becomes a pollable *os.File: Read parks the
	// goroutine in the netpoller instead of blocking a thread.
	return &timerfdWaiter{f: os.NewFile(uintptr(fd), "timerfd")}
}

func (w *timerfdWaiter) wait(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(int(w.f.Fd()), 0, &spec, nil); err != nil {
		return timerWaiter{}.wait(ctx, t)
	}
	stop := context.AfterFunc(ctx, func() { _ = w.f.SetReadDeadline(time.Now()) })
	defer stop()
	_, err := w.f.Read(w.buf[:])
	if err != nil {
		return ctx.Err() == nil && timerWaiter{}.wait(ctx, t)
	}
	return true
}

func (w *timerfdWaiter) close() { _ = w.f.Close() }
