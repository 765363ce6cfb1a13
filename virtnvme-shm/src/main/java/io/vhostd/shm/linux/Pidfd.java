package io.vhostd.shm.linux;

import java.lang.foreign.MemorySegment;

/**
 * Process file descriptors ({@code <sys/pidfd.h>}), through {@code syscall(2)} with the x86_64 numbers. A pidfd
 * becomes readable ({@link Poll#POLLIN}) when the process exits, and names the process without pid-reuse races.
 */
public final class Pidfd {
    /** {@code PIDFD_NONBLOCK} = {@code O_NONBLOCK}. */
    public static final int PIDFD_NONBLOCK = Fcntl.O_NONBLOCK;

    static final long SYS_PIDFD_SEND_SIGNAL = 424;
    static final long SYS_PIDFD_OPEN = 434;
    static final long SYS_PIDFD_GETFD = 438;

    private Pidfd() {}

    /** {@code pidfd_open(2)}: a pidfd (close-on-exec) for {@code pid}; {@code flags} 0 or {@link #PIDFD_NONBLOCK}. */
    public static int pidfd_open(int pid, int flags) {
        MemorySegment capture = NativeSupport.captureState();
        long rc = NativeSupport.syscall(capture, SYS_PIDFD_OPEN, pid, Integer.toUnsignedLong(flags), 0, 0, 0, 0);
        if (rc < 0) {
            throw new ErrnoException("pidfd_open", NativeSupport.errno(capture));
        }
        return (int) rc;
    }

    /** {@code pidfd_send_signal(pidfd, sig, NULL, 0)}. */
    public static void pidfd_send_signal(int pidfd, int sig) {
        MemorySegment capture = NativeSupport.captureState();
        long rc = NativeSupport.syscall(capture, SYS_PIDFD_SEND_SIGNAL, pidfd, sig, 0, 0, 0, 0);
        if (rc < 0) {
            throw new ErrnoException("pidfd_send_signal", NativeSupport.errno(capture));
        }
    }

    /**
     * {@code pidfd_getfd(2)}: a duplicate (close-on-exec) of descriptor {@code targetFd} of the process behind
     * {@code pidfd}; needs ptrace access to it.
     */
    public static int pidfd_getfd(int pidfd, int targetFd) {
        MemorySegment capture = NativeSupport.captureState();
        long rc = NativeSupport.syscall(capture, SYS_PIDFD_GETFD, pidfd, targetFd, 0, 0, 0, 0);
        if (rc < 0) {
            throw new ErrnoException("pidfd_getfd", NativeSupport.errno(capture));
        }
        return (int) rc;
    }
}
