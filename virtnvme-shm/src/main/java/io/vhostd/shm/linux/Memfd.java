package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;

/** {@code <sys/mman.h>} / {@code <linux/memfd.h>}: anonymous memory files ({@code memfd_create(2)}). */
public final class Memfd {
    public static final int MFD_CLOEXEC = 0x0001;
    public static final int MFD_ALLOW_SEALING = 0x0002;
    public static final int MFD_HUGETLB = 0x0004;
    public static final int MFD_NOEXEC_SEAL = 0x0008;
    public static final int MFD_EXEC = 0x0010;
    public static final int MFD_HUGE_SHIFT = 26;
    public static final int MFD_HUGE_2MB = 21 << MFD_HUGE_SHIFT;
    public static final int MFD_HUGE_1GB = 30 << MFD_HUGE_SHIFT;

    /** The kernel's limit on the name, without the {@code "memfd:"} prefix and the NUL. */
    public static final int MFD_NAME_MAX_BYTES = 249;

    private static final MethodHandle MEMFD_CREATE =
            NativeSupport.downcall("memfd_create", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));

    private Memfd() {}

    /**
     * {@code memfd_create(2)}: a new anonymous file of size 0 (size it with {@link Unistd#ftruncate}).
     *
     * @param name shown in {@code /proc/<pid>/fd} as {@code memfd:<name>}; at most {@value #MFD_NAME_MAX_BYTES} UTF-8
     *     bytes
     * @throws ErrnoException e.g. {@code EINVAL} for unsupported flags
     */
    public static int memfd_create(String name, int flags) {
        if (name.getBytes(StandardCharsets.UTF_8).length > MFD_NAME_MAX_BYTES) {
            throw new IllegalArgumentException("memfd name longer than " + MFD_NAME_MAX_BYTES + " bytes");
        }
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            int fd = (int) MEMFD_CREATE.invokeExact(capture, NativeSupport.cString(arena, name), flags);
            if (fd < 0) {
                throw new ErrnoException("memfd_create " + name, NativeSupport.errno(capture));
            }
            return fd;
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }
}
