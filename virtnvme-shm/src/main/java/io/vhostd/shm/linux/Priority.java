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
