package io.vhostd.shm.virtnvme.bench;

/**
 * One measured phase of the hop benchmark.
 *
 * @param name short name, used in the tables ({@code poll-qd1}, {@code idle}...)
 * @param waitMode {@link #WAIT_POLL}: both sides busy-spin and never arm a wake-up; {@link #WAIT_ADAPTIVE}: both spin
 *     for the spin budget after their last work, then arm their event index and sleep on their eventfd
 * @param queueDepth commands the slave keeps outstanding, 1..depth; 0 for the idle phase (nothing submitted)
 * @param warmupOps round trips run before the measured window (JIT, caches), repeated until the warm-up has lasted
 *     {@link HopSubmitter#WARMUP_MIN_NS}, and stopped by {@code maxDurationNs}; not recorded
 * @param ops round trips in the measured window (fewer if {@code maxDurationNs} runs out first)
 * @param rateOpsPerSec 0: submit as fast as completions allow; otherwise (QD1 only) one command every {@code 1e9 /
 *     rate} ns on an absolute schedule, but never sooner than max(interval / 4, 2 × spin budget) after the previous
 *     completion, so that each command finds both sides asleep and a slow round trip is not followed by a catch-up
 *     burst (the achieved rate may then fall below this)
 * @param maxDurationNs the measured window stops submitting after this long; the idle phase lasts exactly this long
 */
record HopPhase(
        String name, int waitMode, int queueDepth, long warmupOps, long ops, long rateOpsPerSec, long maxDurationNs) {
    static final int WAIT_POLL = 0;
    static final int WAIT_ADAPTIVE = 1;

    HopPhase {
        if (waitMode != WAIT_POLL && waitMode != WAIT_ADAPTIVE) {
            throw new IllegalArgumentException("waitMode must be WAIT_POLL or WAIT_ADAPTIVE: " + waitMode);
        }
        if (queueDepth < 0 || warmupOps < 0 || ops < 0 || rateOpsPerSec < 0 || maxDurationNs <= 0) {
            throw new IllegalArgumentException("negative count or non-positive duration in phase " + name);
        }
        if (rateOpsPerSec > 0 && queueDepth != 1) {
            throw new IllegalArgumentException("a paced phase runs at QD1: " + name);
        }
    }

    /** @return true for the phase that submits nothing (idle CPU) */
    boolean isIdle() {
        return queueDepth == 0;
    }

    /** @return "poll" or "adaptive" */
    String waitModeName() {
        return waitMode == WAIT_POLL ? "poll" : "adaptive";
    }
}
