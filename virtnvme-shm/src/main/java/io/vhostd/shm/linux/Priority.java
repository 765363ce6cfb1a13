package io.vhostd.shm.linux;

import java.lang.foreign.MemorySegment;

/**
 * Thread scheduling priority ({@code <sys/resource.h>} {@code setpriority(2)} on a thread id, {@code gettid(2)}),
 * through {@code syscall(2)} with the x86_64 numbers. On Linux {@code PRIO_PROCESS} with a thread id sets that one
 * thread's nice value.
 */
public final class Priority {
    /** {@code PRIO_PROCESS}: {@code who} is a process or, on Linux, a thread id. */
    public static final int PRIO_PROCESS = 0;

    static final long SYS_GETTID = 186;
    static final long SYS_SETPRIORITY = 141;
    static final long SYS_GETPRIORITY = 140;
    static final long SYS_SCHED_SETSCHEDULER = 144;
    static final long SYS_SCHED_GETSCHEDULER = 145;

    /** {@code SCHED_OTHER}: the default time-sharing policy (nice values apply). */
    public static final int SCHED_OTHER = 0;

    /** {@code SCHED_FIFO}: real-time, first in first out; runs before every {@code SCHED_OTHER} thread. */
    public static final int SCHED_FIFO = 1;

    /** {@code SCHED_RESET_ON_FORK}: threads the caller creates start as {@code SCHED_OTHER}, nice 0 or more. */
    public static final int SCHED_RESET_ON_FORK = 0x40000000;

    /**
     * Real-time priority ({@link #SCHED_FIFO}) of the threads a slave handover's pause waits for (issue #4): the
     * control threads of master and slaves while they wait for a message and handle a handover's, and a data-path
     * thread while it takes or gives up queues. They sleep almost always; at nice -10 their wake-ups still waited for
     * busy CPUs (upgrade pause p50 4.2 ms, at SCHED_FIFO 2.2 - 2.7 ms on two CPUs, docs/benchmarks.md session 9). Low
     * among real-time priorities (interrupt threads run at 50), above time-shared threads. System property {@code
     * vhostd.handover.rtprio}, default 10; 0: nice values only. Needs CAP_SYS_NICE (and no systemd
     * RestrictRealtime=yes); without it the nice values apply. The kernel keeps a share of each CPU for ordinary
     * threads (sched_rt_runtime_us), so a thread stuck at this priority cannot take a CPU whole.
     */
    public static final int HANDOVER_RTPRIO = Integer.getInteger("vhostd.handover.rtprio", 10);

    private Priority() {}

    /** {@code gettid(2)}: the calling thread's kernel id. */
    public static int gettid() {
        return (int) NativeSupport.syscall(NativeSupport.captureState(), SYS_GETTID, 0, 0, 0, 0, 0, 0);
    }

    /**
     * {@code setpriority(which, who, prio)}: nice value {@code prio}, -20 (most favoured) .. 19.
     *
     * @throws ErrnoException EACCES / EPERM when lowering the nice value without CAP_SYS_NICE, ESRCH, EINVAL
     */
    public static void setpriority(int which, int who, int prio) {
        MemorySegment capture = NativeSupport.captureState();
        long rc = NativeSupport.syscall(capture, SYS_SETPRIORITY, which, Integer.toUnsignedLong(who), prio, 0, 0, 0);
        if (rc < 0) {
            throw new ErrnoException("setpriority", NativeSupport.errno(capture));
        }
    }

    /**
     * The nice value of thread {@code tid} (the raw syscall answers {@code 20 - nice}, 1..40).
     *
     * @throws ErrnoException ESRCH when there is no such thread
     */
    public static int niceOf(int tid) {
        MemorySegment capture = NativeSupport.captureState();
        long rc =
                NativeSupport.syscall(capture, SYS_GETPRIORITY, PRIO_PROCESS, Integer.toUnsignedLong(tid), 0, 0, 0, 0);
        if (rc < 0) {
            throw new ErrnoException("getpriority", NativeSupport.errno(capture));
        }
        return 20 - (int) rc;
    }

    /**
     * {@code sched_setscheduler(tid, policy, &param)} with {@code param.sched_priority = rtPriority} (1..99 for
     * {@link #SCHED_FIFO}, 0 for {@link #SCHED_OTHER}); {@code policy} may carry {@link #SCHED_RESET_ON_FORK}.
     *
     * @throws ErrnoException EPERM without CAP_SYS_NICE (or RLIMIT_RTPRIO), EINVAL, ESRCH
     */
    public static void setScheduler(int tid, int policy, int rtPriority) {
        try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
            MemorySegment param = arena.allocate(java.lang.foreign.ValueLayout.JAVA_INT);
            param.set(java.lang.foreign.ValueLayout.JAVA_INT, 0, rtPriority);
            MemorySegment capture = NativeSupport.captureState();
            long rc = NativeSupport.syscall(
                    capture, SYS_SCHED_SETSCHEDULER, Integer.toUnsignedLong(tid), policy, param.address(), 0, 0, 0);
            if (rc < 0) {
                throw new ErrnoException("sched_setscheduler", NativeSupport.errno(capture));
            }
        }
    }

    /**
     * The scheduling policy of thread {@code tid} ({@code sched_getscheduler(2)}), with {@link #SCHED_RESET_ON_FORK}
     * if set.
     *
     * @throws ErrnoException ESRCH when there is no such thread
     */
    public static int schedulerOf(int tid) {
        MemorySegment capture = NativeSupport.captureState();
        long rc = NativeSupport.syscall(capture, SYS_SCHED_GETSCHEDULER, Integer.toUnsignedLong(tid), 0, 0, 0, 0, 0);
        if (rc < 0) {
            throw new ErrnoException("sched_getscheduler", NativeSupport.errno(capture));
        }
        return (int) rc;
    }

    /**
     * Favours the calling thread, a control thread that sleeps almost always but whose wake-ups a handover's pause
     * waits for: {@link #SCHED_FIFO} at {@code rtPriority} (with {@link #SCHED_RESET_ON_FORK}, so the threads it
     * starts are ordinary) when {@code rtPriority > 0} and the kernel allows it, else nice value {@code nice}.
     *
     * @return "SCHED_FIFO N", "nice N" or "unchanged" (no CAP_SYS_NICE), for the log
     */
    public static String favourCurrentThread(int nice, int rtPriority) {
        if (rtPriority > 0) {
            try {
                setScheduler(gettid(), SCHED_FIFO | SCHED_RESET_ON_FORK, rtPriority);
                return "SCHED_FIFO " + rtPriority;
            } catch (ErrnoException e) {
                // no CAP_SYS_NICE or no real-time budget (a cgroup without RT runtime): the nice value below
            }
        }
        return niceCurrentThread(nice) ? "nice " + nice : "unchanged";
    }

    /**
     * Undoes {@link #favourCurrentThread} for a while: the calling thread goes back to {@link #SCHED_OTHER} at nice
     * {@code nice} (a favoured thread's work that no guest waits for: a log line, a clean-up). Never fails: leaving
     * real-time and raising the nice value need no privilege.
     */
    public static void ordinaryCurrentThread(int nice) {
        ordinary(gettid());
        niceCurrentThread(nice);
    }

    /**
     * Thread {@code tid} back to {@link #SCHED_OTHER}, keeping {@link #SCHED_RESET_ON_FORK}: a thread made real-time
     * through RLIMIT_RTPRIO (no CAP_SYS_NICE) may leave real-time but not clear that flag. A thread that is gone is
     * skipped.
     */
    private static void ordinary(int tid) {
        try {
            setScheduler(tid, SCHED_OTHER | SCHED_RESET_ON_FORK, 0);
        } catch (ErrnoException e) {
            // the thread is gone
        }
    }

    /**
     * Gives every thread of this process (those in {@code /proc/self/task} now) nice value {@code nice}, and the
     * time-sharing policy; a thread that exited meanwhile or refuses is skipped. For a process about to exit: the
     * kernel tears its memory down at its threads' priorities.
     */
    public static void niceEveryThread(int nice) {
        java.io.File[] tasks = new java.io.File("/proc/self/task").listFiles();
        if (tasks == null) {
            return;
        }
        for (java.io.File task : tasks) {
            try {
                int tid = Integer.parseInt(task.getName());
                ordinary(tid);
                setpriority(PRIO_PROCESS, tid, nice);
            } catch (NumberFormatException | ErrnoException e) {
                // gone, or not ours to change
            }
        }
    }

    /**
     * Gives the calling thread nice value {@code nice}; false when the kernel refused (no CAP_SYS_NICE to go below
     * the current value): the thread keeps its priority.
     */
    public static boolean niceCurrentThread(int nice) {
        try {
            setpriority(PRIO_PROCESS, gettid(), nice);
            return true;
        } catch (ErrnoException e) {
            return false;
        }
    }
}
