/**
 * Linux bindings over the Panama FFM API ({@code java.lang.foreign}), in jextract style: one class per C header
 * ({@link io.vhostd.shm.linux.Unistd}, {@link io.vhostd.shm.linux.Fcntl}, {@link io.vhostd.shm.linux.Mman},
 * {@link io.vhostd.shm.linux.Memfd}, {@link io.vhostd.shm.linux.Eventfd}, {@link io.vhostd.shm.linux.Poll},
 * {@link io.vhostd.shm.linux.Socket}, {@link io.vhostd.shm.linux.Pidfd}, {@link io.vhostd.shm.linux.Signal},
 * {@link io.vhostd.shm.linux.Stat}, {@link io.vhostd.shm.linux.Ioctl}, {@link io.vhostd.shm.linux.IoUring} from the
 * UAPI {@code <linux/io_uring.h>}), C names for functions and constants, a {@code private static final MethodHandle}
 * per function called with {@code invokeExact}, and {@code errno} captured with
 * {@code Linker.Option.captureCallState("errno")} and thrown as {@link io.vhostd.shm.linux.ErrnoException}.
 * {@link io.vhostd.shm.linux.SdNotify} is the one exception to "bound, not written": systemd's {@code sd_notify(3)}
 * protocol implemented over {@link io.vhostd.shm.linux.Socket#sendto}, so that no libsystemd is needed.
 *
 * <p><b>x86_64 Linux only.</b> Constants, syscall numbers and struct offsets are those of the x86_64 ABI with glibc;
 * the tests pin every offset with literal numbers. This is the only package of vhostd that touches
 * {@code java.lang.foreign.Linker}. The JVM needs {@code --enable-native-access=ALL-UNNAMED}.
 *
 * <p>Conventions: descriptors are plain {@code int}s; calls retry on {@code EINTR} where a retry is correct; every
 * other error throws the unchecked {@link io.vhostd.shm.linux.ErrnoException}, except where a method documents a
 * return value for {@code EAGAIN}. Native memory is a {@link java.lang.foreign.MemorySegment} whose size is checked
 * before the kernel sees it; an {@link java.lang.foreign.Arena} owns each mapping; nothing is reinterpreted to an
 * unbounded size.
 */
package io.vhostd.shm.linux;
