// Package burst is llm-d's burst-prefix-cache-producer: requests arriving
// within a short window are placed jointly, so that samples of one prompt
// (an RL rollout's n samples, best-of-N, a fan-out over shared documents)
// land together and the prompt is prefilled once instead of on every
// server a load scorer spreads them to while all caches are cold.
//
// assign.go holds the joint placement, a pure function of one window's
// requests; producer.go the window: live, Produce waits for it to close;
// a simulation that delivers a window's requests at once plans them first
// (scheduler.Batcher), so Produce does not wait.
package burst
