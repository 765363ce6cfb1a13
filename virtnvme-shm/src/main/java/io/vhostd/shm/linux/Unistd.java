package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * {@code <unistd.h>}: file descriptor I/O and housekeeping.
 *
 * <p>Buffers are native {@link MemorySegment}s; a {@code count} larger than the segment is rejected with
 * {@link IndexOutOfBoundsException} before the kernel can write past it. {@code read}, {@code write}, {@code pread} and
 * {@code pwrite} retry on {@code EINTR}, return the byte count of one call (short counts are possible, 0 means end of
 * file for reads) and return -1 on {@code EAGAIN} (a non-blocking fd that is not ready); every other error throws
 * {@link ErrnoException}. No method allocates on the Java heap except {@link #unlink(String)}.
 */
public final class Unistd {
    public static final int STDIN_FILENO = 0;
    public static final int STDOUT_FILENO = 1;
    public static final int STDERR_FILENO = 2;

    public static final int SEEK_SET = 0;
    public static final int SEEK_CUR = 1;
    public static final int SEEK_END = 2;
    public static final int SEEK_DATA = 3;
    public static final int SEEK_HOLE = 4;

    private static final MethodHandle CLOSE =
            NativeSupport.downcall("close", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle READ =
            NativeSupport.downcall("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle WRITE =
            NativeSupport.downcall("write", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle PREAD =
            NativeSupport.downcall("pread", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle PWRITE =
            NativeSupport.downcall("pwrite", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle DUP = NativeSupport.downcall("dup", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle DUP3 =
            NativeSupport.downcall("dup3", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle FSYNC =
            NativeSupport.downcall("fsync", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle FDATASYNC =
            NativeSupport.downcall("fdatasync", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle FTRUNCATE =
            NativeSupport.downcall("ftruncate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG));
    private static final MethodHandle GETPID = NativeSupport.downcallNoErrno("getpid", FunctionDescriptor.of(JAVA_INT));
    private static final MethodHandle LSEEK =
            NativeSupport.downcall("lseek", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT));
    private static final MethodHandle UNLINK =
            NativeSupport.downcall("unlink", FunctionDescriptor.of(JAVA_INT, ADDRESS));

    private Unistd() {}

    /**
     * {@code close(2)}. {@code EINTR} is not retried and not reported: Linux has released the descriptor by then, and a
     * retry could close a descriptor another thread just received.
     *
     * @throws ErrnoException e.g. {@code EBADF} for a descriptor that is not open
     */
    public static void close(int fd) {
        MemorySegment capture = NativeSupport.captureState();
        int rc;
        try {
            rc = (int) CLOSE.invokeExact(capture, fd);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (rc < 0) {
            int errno = NativeSupport.errno(capture);
            if (errno != Errno.EINTR) {
                throw new ErrnoException("close", errno);
            }
        }
    }

    /** {@code read(2)} of up to {@code count} bytes into {@code buf}: bytes read, 0 at end of file, -1 on EAGAIN. */
    public static long read(int fd, MemorySegment buf, long count) {
        NativeSupport.checkNative(buf, count);
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            long n;
            try {
                n = (long) READ.invokeExact(capture, fd, buf, count);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (n >= 0) {
                return n;
            }
            int errno = NativeSupport.errno(capture);
            if (errno == Errno.EAGAIN) {
                return -1;
            }
            if (errno != Errno.EINTR) {
                throw new ErrnoException("read", errno);
            }
        }
    }

    /** {@code write(2)} of up to {@code count} bytes from {@code buf}: bytes written, -1 on EAGAIN. */
    public static long write(int fd, MemorySegment buf, long count) {
        NativeSupport.checkNative(buf, count);
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            long n;
            try {
                n = (long) WRITE.invokeExact(capture, fd, buf, count);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (n >= 0) {
                return n;
            }
            int errno = NativeSupport.errno(capture);
            if (errno == Errno.EAGAIN) {
                return -1;
            }
            if (errno != Errno.EINTR) {
                throw new ErrnoException("write", errno);
            }
        }
    }

    /** {@code pread(2)} at byte {@code offset}: bytes read, 0 at end of file, -1 on EAGAIN. */
    public static long pread(int fd, MemorySegment buf, long count, long offset) {
        NativeSupport.checkNative(buf, count);
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            long n;
            try {
                n = (long) PREAD.invokeExact(capture, fd, buf, count, offset);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (n >= 0) {
                return n;
            }
            int errno = NativeSupport.errno(capture);
            if (errno == Errno.EAGAIN) {
                return -1;
            }
            if (errno != Errno.EINTR) {
                throw new ErrnoException("pread", errno);
            }
        }
    }

    /** {@code pwrite(2)} at byte {@code offset}: bytes written, -1 on EAGAIN. */
    public static long pwrite(int fd, MemorySegment buf, long count, long offset) {
        NativeSupport.checkNative(buf, count);
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            long n;
            try {
                n = (long) PWRITE.invokeExact(capture, fd, buf, count, offset);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (n >= 0) {
                return n;
            }
            int errno = NativeSupport.errno(capture);
            if (errno == Errno.EAGAIN) {
                return -1;
            }
            if (errno != Errno.EINTR) {
                throw new ErrnoException("pwrite", errno);
            }
        }
    }

    /** {@code dup(2)}: a new descriptor for the same open file. The new descriptor does NOT have close-on-exec. */
    public static int dup(int fd) {
        MemorySegment capture = NativeSupport.captureState();
        int rc;
        try {
            rc = (int) DUP.invokeExact(capture, fd);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (rc < 0) {
            throw new ErrnoException("dup", NativeSupport.errno(capture));
        }
        return rc;
    }

    /** {@code dup3(2)}: makes {@code newFd} refer to {@code oldFd}'s file; {@code flags} may be {@code O_CLOEXEC}. */
    public static int dup3(int oldFd, int newFd, int flags) {
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            int rc;
            try {
                rc = (int) DUP3.invokeExact(capture, oldFd, newFd, flags);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (rc >= 0) {
                return rc;
            }
            int errno = NativeSupport.errno(capture);
            if (errno != Errno.EINTR) {
                throw new ErrnoException("dup3", errno);
            }
        }
    }

    /** {@code fsync(2)}: data and metadata to stable storage. */
    public static void fsync(int fd) {
        syncCall(FSYNC, "fsync", fd);
    }

    /** {@code fdatasync(2)}: data (and the metadata needed to read it) to stable storage. */
    public static void fdatasync(int fd) {
        syncCall(FDATASYNC, "fdatasync", fd);
    }

    private static void syncCall(MethodHandle handle, String call, int fd) {
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            int rc;
            try {
                rc = (int) handle.invokeExact(capture, fd);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (rc == 0) {
                return;
            }
            int errno = NativeSupport.errno(capture);
            if (errno != Errno.EINTR) {
                throw new ErrnoException(call, errno);
            }
        }
    }

    /** {@code ftruncate(2)}: sets the file's size to {@code lengthBytes}. */
    public static void ftruncate(int fd, long lengthBytes) {
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            int rc;
            try {
                rc = (int) FTRUNCATE.invokeExact(capture, fd, lengthBytes);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (rc == 0) {
                return;
            }
            int errno = NativeSupport.errno(capture);
            if (errno != Errno.EINTR) {
                throw new ErrnoException("ftruncate", errno);
            }
        }
    }

    /** {@code getpid(2)}: this process's id. */
    public static int getpid() {
        try {
            return (int) GETPID.invokeExact();
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /** {@code lseek(2)}: the resulting offset; {@code whence} is {@link #SEEK_SET} .. {@link #SEEK_HOLE}. */
    public static long lseek(int fd, long offset, int whence) {
        MemorySegment capture = NativeSupport.captureState();
        long rc;
        try {
            rc = (long) LSEEK.invokeExact(capture, fd, offset, whence);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (rc < 0) {
            throw new ErrnoException("lseek", NativeSupport.errno(capture));
        }
        return rc;
    }

    /** {@code unlink(2)}. A missing file is an error ({@code ENOENT} is thrown like any other errno). */
    public static void unlink(String path) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            int rc = (int) UNLINK.invokeExact(capture, NativeSupport.cString(arena, path));
            if (rc < 0) {
                throw new ErrnoException("unlink " + path, NativeSupport.errno(capture));
            }
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }
}
