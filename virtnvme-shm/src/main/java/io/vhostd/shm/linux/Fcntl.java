package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/** {@code <fcntl.h>}: {@code open(2)}, {@code fcntl(2)}, {@code fallocate(2)} and their flags (x86_64 values). */
public final class Fcntl {
    public static final int O_RDONLY = 0;
    public static final int O_WRONLY = 01;
    public static final int O_RDWR = 02;
    public static final int O_CREAT = 0100;
    public static final int O_EXCL = 0200;
    public static final int O_NOCTTY = 0400;
    public static final int O_TRUNC = 01000;
    public static final int O_APPEND = 02000;
    public static final int O_NONBLOCK = 04000;
    public static final int O_DSYNC = 010000;
    public static final int O_DIRECT = 040000;
    public static final int O_DIRECTORY = 0200000;
    public static final int O_NOFOLLOW = 0400000;
    public static final int O_CLOEXEC = 02000000;
    public static final int O_SYNC = 04010000;

    public static final int F_DUPFD = 0;
    public static final int F_GETFD = 1;
    public static final int F_SETFD = 2;
    public static final int F_GETFL = 3;
    public static final int F_SETFL = 4;
    public static final int F_DUPFD_CLOEXEC = 1030;
    public static final int F_ADD_SEALS = 1033;
    public static final int F_GET_SEALS = 1034;

    /** {@code F_GETFD}/{@code F_SETFD} flag: close on exec. */
    public static final int FD_CLOEXEC = 1;

    public static final int F_SEAL_SEAL = 0x0001;
    public static final int F_SEAL_SHRINK = 0x0002;
    public static final int F_SEAL_GROW = 0x0004;
    public static final int F_SEAL_WRITE = 0x0008;
    public static final int F_SEAL_FUTURE_WRITE = 0x0010;

    public static final int FALLOC_FL_KEEP_SIZE = 0x01;
    public static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    public static final int FALLOC_FL_COLLAPSE_RANGE = 0x08;
    public static final int FALLOC_FL_ZERO_RANGE = 0x10;
    public static final int FALLOC_FL_INSERT_RANGE = 0x20;

    /** {@code int open(const char *, int, ...)}: the mode is the one variadic argument. */
    private static final MethodHandle OPEN =
            NativeSupport.downcallVariadic("open", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT), 2);
    /** {@code int fcntl(int, int, ...)} with an int argument (every command used here takes an int). */
    private static final MethodHandle FCNTL =
            NativeSupport.downcallVariadic("fcntl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT), 2);

    private static final MethodHandle FALLOCATE = NativeSupport.downcall(
            "fallocate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG));

    private Fcntl() {}

    /**
     * {@code open(2)}; retries on {@code EINTR}.
     *
     * @param mode permission bits for {@link #O_CREAT} (e.g. {@code 0600}), otherwise ignored
     * @return the new descriptor
     * @throws ErrnoException with the path in {@link ErrnoException#call()}
     */
    public static int open(String path, int flags, int mode) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cPath = NativeSupport.cString(arena, path);
            while (true) {
                int fd = (int) OPEN.invokeExact(capture, cPath, flags, mode);
                if (fd >= 0) {
                    return fd;
                }
                int errno = NativeSupport.errno(capture);
                if (errno != Errno.EINTR) {
                    throw new ErrnoException("open " + path, errno);
                }
            }
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /** {@code fcntl(2)} with an int argument (0 where the command takes none); retries on {@code EINTR}. */
    public static int fcntl(int fd, int cmd, int arg) {
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            int rc;
            try {
                rc = (int) FCNTL.invokeExact(capture, fd, cmd, arg);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (rc >= 0) {
                return rc;
            }
            int errno = NativeSupport.errno(capture);
            if (errno != Errno.EINTR) {
                throw new ErrnoException("fcntl", errno);
            }
        }
    }

    /** Sets or clears {@link #O_NONBLOCK} on the open file description (shared with every dup of {@code fd}). */
    public static void setNonBlocking(int fd, boolean on) {
        int flags = fcntl(fd, F_GETFL, 0);
        int updated = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
        if (updated != flags) {
            fcntl(fd, F_SETFL, updated);
        }
    }

    /** Sets or clears {@link #FD_CLOEXEC} on the descriptor. */
    public static void setCloseOnExec(int fd, boolean on) {
        int flags = fcntl(fd, F_GETFD, 0);
        fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC);
    }

    /**
     * {@code fallocate(2)}: allocates (mode 0), punches ({@code FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE}) or zeroes
     * ({@link #FALLOC_FL_ZERO_RANGE}) {@code [offset, offset + len)} bytes; retries on {@code EINTR}.
     *
     * @throws ErrnoException e.g. {@code EOPNOTSUPP} where the file system lacks the mode
     */
    public static void fallocate(int fd, int mode, long offset, long len) {
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            int rc;
            try {
                rc = (int) FALLOCATE.invokeExact(capture, fd, mode, offset, len);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (rc == 0) {
                return;
            }
            int errno = NativeSupport.errno(capture);
            if (errno != Errno.EINTR) {
                throw new ErrnoException("fallocate", errno);
            }
        }
    }
}
