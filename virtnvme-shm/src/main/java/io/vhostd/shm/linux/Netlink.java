package io.vhostd.shm.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Netlink sockets ({@code <linux/netlink.h>}, netlink(7)) to talk to the kernel, through {@code syscall(2)} with the
 * x86_64 numbers. Only what a generic-netlink client needs: a raw socket bound to a kernel-assigned port id, a
 * datagram to the kernel, and a datagram received with the sender's port id (0: the kernel; anything else is another
 * process and must not be trusted as the kernel's word).
 */
public final class Netlink {
    /** {@code AF_NETLINK}. */
    public static final int AF_NETLINK = 16;

    /** {@code SOCK_RAW}. */
    public static final int SOCK_RAW = 3;

    /** {@code NETLINK_GENERIC}: generic netlink (genetlink), e.g. the {@code TASKSTATS} family. */
    public static final int NETLINK_GENERIC = 16;

    /** {@code sizeof(struct sockaddr_nl)}: {@code nl_family} u16, {@code nl_pad} u16, {@code nl_pid} u32, {@code nl_groups} u32. */
    static final int SOCKADDR_NL_BYTES = 12;

    private static final long NL_PID_OFFSET = 4;

    static final long SYS_SENDTO = 44;
    static final long SYS_RECVFROM = 45;
    static final long SYS_BIND = 49;

    private Netlink() {}

    /**
     * A netlink socket of {@code protocol} (close-on-exec), bound to a port id the kernel picks.
     *
     * @throws ErrnoException from socket(2) (EPROTONOSUPPORT: the kernel lacks the protocol) or bind(2)
     */
    public static int open(int protocol) {
        int fd = Socket.socket(AF_NETLINK, SOCK_RAW | Socket.SOCK_CLOEXEC, protocol);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment addr = kernelAssigned(arena);
            MemorySegment capture = NativeSupport.captureState();
            long rc = NativeSupport.syscall(capture, SYS_BIND, fd, addr.address(), SOCKADDR_NL_BYTES, 0, 0, 0);
            if (rc < 0) {
                throw new ErrnoException("bind(AF_NETLINK)", NativeSupport.errno(capture));
            }
        } catch (RuntimeException e) {
            Unistd.close(fd);
            throw e;
        }
        return fd;
    }

    /**
     * Sends {@code [0, lengthBytes)} of {@code message} (one or more netlink messages) to the kernel (port id 0).
     *
     * @throws ErrnoException from sendto(2)
     */
    public static void sendToKernel(int fd, MemorySegment message, long lengthBytes) {
        NativeSupport.checkNative(message, lengthBytes);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment addr = kernelAssigned(arena);
            MemorySegment capture = NativeSupport.captureState();
            long rc = NativeSupport.syscall(
                    capture, SYS_SENDTO, fd, message.address(), lengthBytes, 0, addr.address(), SOCKADDR_NL_BYTES);
            if (rc < 0) {
                throw new ErrnoException("sendto(AF_NETLINK)", NativeSupport.errno(capture));
            }
        }
    }

    /**
     * A {@code sockaddr_nl} with port id 0 and no groups: to bind, the kernel picks the port id; to send, the kernel is
     * the destination.
     */
    private static MemorySegment kernelAssigned(Arena arena) {
        MemorySegment addr = arena.allocate(SOCKADDR_NL_BYTES);
        addr.set(ValueLayout.JAVA_SHORT, 0, (short) AF_NETLINK);
        return addr;
    }

    /**
     * What {@link #receive} read.
     *
     * @param lengthBytes bytes written to the buffer (a datagram longer than the buffer is cut: {@code truncated})
     * @param senderPortId the sender's netlink port id: 0 for the kernel
     * @param truncated whether the datagram was longer than the buffer ({@code MSG_TRUNC})
     */
    public record Received(long lengthBytes, int senderPortId, boolean truncated) {}

    /**
     * Receives one datagram into {@code buf} ({@code recvfrom(2)} with {@code flags}, e.g. {@link Socket#MSG_DONTWAIT}).
     *
     * @return what was read, or null when {@code MSG_DONTWAIT} found nothing (EAGAIN)
     * @throws ErrnoException from recvfrom(2), e.g. ENOBUFS when the kernel dropped messages for want of buffer space
     *     (the socket stays usable)
     */
    public static Received receive(int fd, MemorySegment buf, int flags) {
        NativeSupport.checkNative(buf, buf.byteSize());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment addr = arena.allocate(SOCKADDR_NL_BYTES);
            MemorySegment addrLen = arena.allocate(ValueLayout.JAVA_INT);
            addrLen.set(ValueLayout.JAVA_INT, 0, SOCKADDR_NL_BYTES);
            MemorySegment capture = NativeSupport.captureState();
            long rc = NativeSupport.syscall(
                    capture,
                    SYS_RECVFROM,
                    fd,
                    buf.address(),
                    buf.byteSize(),
                    Integer.toUnsignedLong(flags | Socket.MSG_TRUNC),
                    addr.address(),
                    addrLen.address());
            if (rc < 0) {
                int errno = NativeSupport.errno(capture);
                if (errno == Errno.EAGAIN) {
                    return null;
                }
                throw new ErrnoException("recvfrom(AF_NETLINK)", errno);
            }
            return new Received(
                    Math.min(rc, buf.byteSize()), addr.get(ValueLayout.JAVA_INT, NL_PID_OFFSET), rc > buf.byteSize());
        }
    }
}
