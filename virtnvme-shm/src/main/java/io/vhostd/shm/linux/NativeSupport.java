package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout.PathElement;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.util.Optional;

/**
 * Shared plumbing of the bindings: the native linker, libc symbol lookup, errno capture, the per-thread scratch memory
 * that lets hot calls (eventfd, poll, errno capture) run without allocating, and raw {@code syscall(2)}.
 */
// restricted FFM methods are this package's job; the JVM runs with --enable-native-access
@SuppressWarnings("restricted")
final class NativeSupport {
    static final Linker LINKER = Linker.nativeLinker();
    static final SymbolLookup LIBC = LINKER.defaultLookup();

    /** Layout of the call state captured after each call; on Linux it holds {@code errno} only. */
    static final StructLayout CAPTURE_STATE_LAYOUT = Linker.Option.captureStateLayout();

    private static final VarHandle ERRNO = CAPTURE_STATE_LAYOUT.varHandle(PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE_ERRNO = Linker.Option.captureCallState("errno");

    /** {@code long syscall(long number, ...)} with six variadic arguments, all passed as 64-bit registers. */
    private static final MethodHandle SYSCALL6 = downcallVariadic(
            "syscall",
            FunctionDescriptor.of(
                    JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG),
            1);

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    private NativeSupport() {}

    /**
     * Per-thread native scratch memory, allocated once per thread and freed by the GC after the thread is gone
     * ({@link Arena#ofAuto()}). Each call site uses its own slice, so no two users of one thread overlap.
     */
    static final class Scratch {
        /** {@code errno} capture state. */
        final MemorySegment capture;
        /** One 8-byte word: the eventfd counter. */
        final MemorySegment word;
        /** One {@code struct pollfd} (8 bytes). */
        final MemorySegment pollfd;

        private Scratch() {
            MemorySegment all = Arena.ofAuto().allocate(64, 16);
            capture = all.asSlice(0, CAPTURE_STATE_LAYOUT.byteSize());
            word = all.asSlice(32, 8);
            pollfd = all.asSlice(40, 8);
        }
    }

    /** The calling thread's scratch; allocation-free after the first call on a thread. */
    static Scratch scratch() {
        return SCRATCH.get();
    }

    /** The calling thread's errno capture segment. */
    static MemorySegment captureState() {
        return SCRATCH.get().capture;
    }

    /** Allocates a new capture segment for an object that is used by one thread at a time (a ring, a poll set). */
    static MemorySegment allocateCaptureState(Arena arena) {
        return arena.allocate(CAPTURE_STATE_LAYOUT);
    }

    /** The errno a captured call left behind. */
    static int errno(MemorySegment captureState) {
        return (int) ERRNO.get(captureState, 0L);
    }

    static MemorySegment find(String name) {
        return LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc symbol not found: " + name));
    }

    static Optional<MemorySegment> findOptional(String name) {
        return LIBC.find(name);
    }

    /** A downcall whose first parameter is the errno capture segment. */
    static MethodHandle downcall(String name, FunctionDescriptor descriptor) {
        return LINKER.downcallHandle(find(name), descriptor, CAPTURE_ERRNO);
    }

    /** A variadic downcall (arguments from {@code firstVariadicArg} on) whose first parameter is the capture segment. */
    static MethodHandle downcallVariadic(String name, FunctionDescriptor descriptor, int firstVariadicArg) {
        return LINKER.downcallHandle(
                find(name), descriptor, CAPTURE_ERRNO, Linker.Option.firstVariadicArg(firstVariadicArg));
    }

    /** A downcall that does not capture errno (functions that cannot fail or report errors by return value). */
    static MethodHandle downcallNoErrno(String name, FunctionDescriptor descriptor) {
        return LINKER.downcallHandle(find(name), descriptor);
    }

    /**
     * Raw {@code syscall(2)}: returns the kernel's result, or -1 with errno in {@code captureState}. Pointers are passed
     * as addresses; unused arguments are 0.
     */
    static long syscall(MemorySegment captureState, long number, long a1, long a2, long a3, long a4, long a5, long a6) {
        try {
            return (long) SYSCALL6.invokeExact(captureState, number, a1, a2, a3, a4, a5, a6);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** {@code invokeExact} declares Throwable; downcalls throw only unchecked exceptions. */
    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException e) {
            return e;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new IllegalStateException("unexpected checked exception from a downcall", t);
    }

    /** Checks that {@code [0, lengthBytes)} lies inside {@code segment} and that it is native memory. */
    static void checkNative(MemorySegment segment, long lengthBytes) {
        if (!segment.isNative()) {
            throw new IllegalArgumentException("not a native segment: " + segment);
        }
        if (lengthBytes < 0 || lengthBytes > segment.byteSize()) {
            throw new IndexOutOfBoundsException(
                    "length " + lengthBytes + " outside segment of " + segment.byteSize() + " bytes");
        }
    }

    /** {@code path} as a NUL-terminated UTF-8 string; rejects embedded NULs, which C would silently cut. */
    static MemorySegment cString(Arena arena, String path) {
        if (path.indexOf('\0') >= 0) {
            throw new IllegalArgumentException("path contains a NUL character");
        }
        return arena.allocateFrom(path);
    }
}
