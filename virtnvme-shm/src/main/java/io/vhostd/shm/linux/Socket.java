package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * {@code <sys/socket.h>} / {@code <sys/un.h>}: unix-domain sockets with descriptor passing ({@code SCM_RIGHTS}).
 *
 * <p>Struct layouts (x86_64): {@code struct msghdr} 56 bytes ({@code msg_iov} @16, {@code msg_iovlen} @24,
 * {@code msg_control} @32, {@code msg_controllen} @40, {@code msg_flags} @48); {@code struct cmsghdr} 16 bytes
 * ({@code cmsg_len} @0 as size_t, {@code cmsg_level} @8, {@code cmsg_type} @12, data @16); {@code struct sockaddr_un}
 * 110 bytes ({@code sun_path} @2); {@code struct ucred} 12 bytes.
 *
 * <p>These are control-path calls: {@link #sendmsg} and {@link #recvmsg} allocate their {@code msghdr} in a confined
 * arena per call.
 */
public final class Socket {
    public static final int AF_UNIX = 1;

    public static final int SOCK_STREAM = 1;
    public static final int SOCK_DGRAM = 2;
    public static final int SOCK_SEQPACKET = 5;
    public static final int SOCK_NONBLOCK = 04000;
    public static final int SOCK_CLOEXEC = 02000000;

    public static final int SHUT_RD = 0;
    public static final int SHUT_WR = 1;
    public static final int SHUT_RDWR = 2;

    public static final int MSG_PEEK = 0x2;
    public static final int MSG_CTRUNC = 0x8;
    public static final int MSG_TRUNC = 0x20;
    public static final int MSG_DONTWAIT = 0x40;
    public static final int MSG_WAITALL = 0x100;
    public static final int MSG_NOSIGNAL = 0x4000;
    public static final int MSG_CMSG_CLOEXEC = 0x40000000;

    public static final int SOL_SOCKET = 1;
    public static final int SO_TYPE = 3;
    public static final int SO_SNDBUF = 7;
    public static final int SO_RCVBUF = 8;
    /** {@code SO_RCVBUFFORCE}: {@link #SO_RCVBUF} past {@code net.core.rmem_max}; needs CAP_NET_ADMIN. */
    public static final int SO_RCVBUFFORCE = 33;

    public static final int SO_PASSCRED = 16;
    public static final int SO_PEERCRED = 17;
    public static final int SO_ACCEPTCONN = 30;
    public static final int SO_DOMAIN = 39;

    public static final int SCM_RIGHTS = 1;
    public static final int SCM_CREDENTIALS = 2;

    /** The kernel's limit on descriptors in one {@code SCM_RIGHTS} message. */
    public static final int SCM_MAX_FD = 253;

    static final long MSGHDR_SIZE = 56;
    static final long MSG_NAME_OFFSET = 0;
    static final long MSG_NAMELEN_OFFSET = 8;
    static final long MSG_IOV_OFFSET = 16;
    static final long MSG_IOVLEN_OFFSET = 24;
    static final long MSG_CONTROL_OFFSET = 32;
    static final long MSG_CONTROLLEN_OFFSET = 40;
    static final long MSG_FLAGS_OFFSET = 48;

    static final long CMSGHDR_SIZE = 16;
    static final long CMSG_LEN_OFFSET = 0;
    static final long CMSG_LEVEL_OFFSET = 8;
    static final long CMSG_TYPE_OFFSET = 12;

    static final long SOCKADDR_UN_SIZE = 110;
    static final long SUN_PATH_OFFSET = 2;
    static final int SUN_PATH_BYTES = 108;

    static final long UCRED_SIZE = 12;

    private static final int[] NO_FDS = new int[0];

    private static final MethodHandle SOCKET =
            NativeSupport.downcall("socket", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle SOCKETPAIR = NativeSupport.downcall(
            "socketpair", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS));
    private static final MethodHandle BIND =
            NativeSupport.downcall("bind", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle LISTEN =
            NativeSupport.downcall("listen", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle ACCEPT4 =
            NativeSupport.downcall("accept4", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT));
    private static final MethodHandle CONNECT =
            NativeSupport.downcall("connect", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle SHUTDOWN =
            NativeSupport.downcall("shutdown", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle SENDMSG =
            NativeSupport.downcall("sendmsg", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle SENDTO = NativeSupport.downcall(
            "sendto", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle GETSOCKNAME =
            NativeSupport.downcall("getsockname", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS));
    private static final MethodHandle RECVMSG =
            NativeSupport.downcall("recvmsg", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle GETSOCKOPT = NativeSupport.downcall(
            "getsockopt", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS));
    private static final MethodHandle SETSOCKOPT = NativeSupport.downcall(
            "setsockopt", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));

    private Socket() {}

    /**
     * The result of one {@link #recvmsg}.
     *
     * @param bytes bytes received; 0 at end of stream; -1 when a non-blocking socket had nothing ({@code EAGAIN})
     * @param fds descriptors received (close-on-exec set); empty when {@code truncatedFds}
     * @param truncatedFds the sender attached more descriptors than fitted ({@code MSG_CTRUNC}); those that did arrive
     *     were closed
     */
    public record Received(long bytes, int[] fds, boolean truncatedFds) {}

    /**
     * The result of one {@link #recvFully}.
     *
     * @param eof the peer closed the connection before the first byte; nothing was received
     * @param fds descriptors received with any chunk of the message (close-on-exec set); empty when {@code truncatedFds}
     * @param truncatedFds some chunk arrived with more descriptors than fitted; all descriptors of the message were
     *     closed
     */
    public record ReceivedFully(boolean eof, int[] fds, boolean truncatedFds) {}

    /** Peer credentials ({@code SO_PEERCRED}) as they were when the peer called connect or socketpair. */
    public record Ucred(int pid, int uid, int gid) {}

    /** {@code socket(2)}; pass {@link #SOCK_CLOEXEC} in {@code type} unless the fd must survive exec. */
    public static int socket(int domain, int type, int protocol) {
        MemorySegment capture = NativeSupport.captureState();
        int fd;
        try {
            fd = (int) SOCKET.invokeExact(capture, domain, type, protocol);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (fd < 0) {
            throw new ErrnoException("socket", NativeSupport.errno(capture));
        }
        return fd;
    }

    /** {@code socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0)}: two connected sockets. */
    public static int[] socketpair(int type) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sv = arena.allocate(JAVA_INT, 2);
            int rc = (int) SOCKETPAIR.invokeExact(capture, AF_UNIX, type | SOCK_CLOEXEC, 0, sv);
            if (rc < 0) {
                throw new ErrnoException("socketpair", NativeSupport.errno(capture));
            }
            return new int[] {sv.getAtIndex(JAVA_INT, 0), sv.getAtIndex(JAVA_INT, 1)};
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /**
     * {@code bind(2)} to a unix socket path. A path starting with NUL names the abstract namespace.
     *
     * @throws IllegalArgumentException when the path does not fit {@code sun_path} (107 bytes + NUL)
     */
    public static void bind(int fd, String path) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment address = sockaddrUn(arena, path);
            int rc = (int) BIND.invokeExact(capture, fd, address, sockaddrUnLength(path));
            if (rc < 0) {
                throw new ErrnoException("bind " + path, NativeSupport.errno(capture));
            }
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /** {@code listen(2)}. */
    public static void listen(int fd, int backlog) {
        MemorySegment capture = NativeSupport.captureState();
        int rc;
        try {
            rc = (int) LISTEN.invokeExact(capture, fd, backlog);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (rc < 0) {
            throw new ErrnoException("listen", NativeSupport.errno(capture));
        }
    }

    /** {@code accept4(fd, NULL, NULL, SOCK_CLOEXEC)}; retries on {@code EINTR}; -1 on {@code EAGAIN}. */
    public static int accept(int fd) {
        return accept(fd, SOCK_CLOEXEC);
    }

    /** {@code accept4(fd, NULL, NULL, flags)}; retries on {@code EINTR} and {@code ECONNABORTED}; -1 on EAGAIN. */
    public static int accept(int fd, int flags) {
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            int rc;
            try {
                rc = (int) ACCEPT4.invokeExact(capture, fd, MemorySegment.NULL, MemorySegment.NULL, flags);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (rc >= 0) {
                return rc;
            }
            int errno = NativeSupport.errno(capture);
            if (errno == Errno.EAGAIN) {
                return -1;
            }
            if (errno != Errno.EINTR && errno != Errno.ECONNABORTED) {
                throw new ErrnoException("accept4", errno);
            }
        }
    }

    /** {@code connect(2)} to a unix socket path (a leading NUL names the abstract namespace). */
    public static void connect(int fd, String path) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment address = sockaddrUn(arena, path);
            int length = sockaddrUnLength(path);
            boolean retried = false;
            while (true) {
                int rc = (int) CONNECT.invokeExact(capture, fd, address, length);
                if (rc == 0) {
                    return;
                }
                int errno = NativeSupport.errno(capture);
                if (errno == Errno.EINTR) {
                    retried = true;
                } else if (retried && errno == Errno.EISCONN) {
                    // the interrupted attempt completed in the background
                    return;
                } else {
                    throw new ErrnoException("connect " + path, errno);
                }
            }
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /** {@code shutdown(2)} with {@link #SHUT_RD}, {@link #SHUT_WR} or {@link #SHUT_RDWR}. */
    public static void shutdown(int fd, int how) {
        MemorySegment capture = NativeSupport.captureState();
        int rc;
        try {
            rc = (int) SHUTDOWN.invokeExact(capture, fd, how);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (rc < 0) {
            throw new ErrnoException("shutdown", NativeSupport.errno(capture));
        }
    }

    /**
     * Sends the first {@code lengthBytes} of {@code data} with {@code MSG_NOSIGNAL}, attaching {@code fds} (may be
     * empty) as one {@code SCM_RIGHTS} message to the first chunk. Loops until every byte is sent; retries on
     * {@code EINTR}; on a non-blocking socket waits for {@code POLLOUT} on {@code EAGAIN}, so it always blocks until done.
     *
     * @throws ErrnoException e.g. {@code EPIPE} when the peer has gone
     * @throws IllegalArgumentException for more than {@link #SCM_MAX_FD} fds, or fds with {@code lengthBytes == 0}
     */
    public static void sendmsg(int fd, MemorySegment data, long lengthBytes, int... fds) {
        NativeSupport.checkNative(data, lengthBytes);
        if (fds.length > SCM_MAX_FD) {
            throw new IllegalArgumentException("at most " + SCM_MAX_FD + " fds per message: " + fds.length);
        }
        if (fds.length > 0 && lengthBytes == 0) {
            // a stream socket carries ancillary data only together with at least one byte
            throw new IllegalArgumentException("fds need at least one data byte to travel with");
        }
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment msg = arena.allocate(MSGHDR_SIZE, 8);
            MemorySegment iov = arena.allocate(IovecArray.IOVEC_SIZE, 8);
            MemorySegment control = MemorySegment.NULL;
            if (fds.length > 0) {
                long dataBytes = (long) fds.length * Integer.BYTES;
                control = arena.allocate(cmsgSpace(dataBytes), 8);
                control.set(JAVA_LONG, CMSG_LEN_OFFSET, cmsgLen(dataBytes));
                control.set(JAVA_INT, CMSG_LEVEL_OFFSET, SOL_SOCKET);
                control.set(JAVA_INT, CMSG_TYPE_OFFSET, SCM_RIGHTS);
                MemorySegment.copy(fds, 0, control, JAVA_INT, CMSGHDR_SIZE, fds.length);
            }
            msg.set(ADDRESS, MSG_IOV_OFFSET, iov);
            msg.set(JAVA_LONG, MSG_IOVLEN_OFFSET, 1L);
            long sent = 0;
            boolean fdsPending = fds.length > 0;
            do {
                iov.set(JAVA_LONG, IovecArray.IOV_BASE_OFFSET, data.address() + sent);
                iov.set(JAVA_LONG, IovecArray.IOV_LEN_OFFSET, lengthBytes - sent);
                msg.set(ADDRESS, MSG_CONTROL_OFFSET, fdsPending ? control : MemorySegment.NULL);
                msg.set(JAVA_LONG, MSG_CONTROLLEN_OFFSET, fdsPending ? control.byteSize() : 0L);
                long n = (long) SENDMSG.invokeExact(capture, fd, msg, MSG_NOSIGNAL);
                if (n < 0) {
                    int errno = NativeSupport.errno(capture);
                    if (errno == Errno.EAGAIN) {
                        Poll.poll(fd, Poll.POLLOUT, -1);
                    } else if (errno != Errno.EINTR) {
                        throw new ErrnoException("sendmsg", errno);
                    }
                    continue;
                }
                // the descriptors travel with the first chunk the kernel accepted
                fdsPending = false;
                sent += n;
            } while (sent < lengthBytes);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /**
     * One {@code recvmsg(2)} with {@code MSG_CMSG_CLOEXEC} of up to {@code lengthBytes} into {@code buf}, accepting up
     * to {@code maxFds} descriptors. Retries on {@code EINTR}. If the control data was truncated ({@code MSG_CTRUNC}),
     * the descriptors that did arrive are closed and {@link Received#truncatedFds()} is true. On a non-blocking socket
     * with nothing to read ({@code EAGAIN}) it returns {@code bytes == -1}. A datagram longer than {@code lengthBytes}
     * ({@code SOCK_SEQPACKET}) is cut to fit, as recvmsg(2) does.
     */
    public static Received recvmsg(int fd, MemorySegment buf, long lengthBytes, int maxFds) {
        NativeSupport.checkNative(buf, lengthBytes);
        checkMaxFds(maxFds);
        try (Arena arena = Arena.ofConfined()) {
            Receiver receiver = new Receiver(arena, maxFds);
            long n = receiver.receive(fd, buf.address(), lengthBytes, maxFds);
            if (n < 0) {
                return new Received(-1, NO_FDS, false);
            }
            if (receiver.truncated) {
                receiver.closeAll();
                return new Received(n, NO_FDS, true);
            }
            return new Received(n, receiver.fds(), false);
        }
    }

    /**
     * Receives exactly {@code lengthBytes} into {@code buf}, looping over {@code recvmsg(2)} and collecting up to
     * {@code maxFds} descriptors from every chunk. Blocks until done (waits for {@code POLLIN} on a non-blocking socket).
     *
     * @return {@code eof = true} if the peer closed the connection before the first byte
     * @throws ErrnoException {@code ECONNRESET} if the peer closed it mid-message (the descriptors received are closed)
     */
    public static ReceivedFully recvFully(int fd, MemorySegment buf, long lengthBytes, int maxFds) {
        NativeSupport.checkNative(buf, lengthBytes);
        checkMaxFds(maxFds);
        if (lengthBytes == 0) {
            throw new IllegalArgumentException("lengthBytes must be > 0");
        }
        try (Arena arena = Arena.ofConfined()) {
            Receiver receiver = new Receiver(arena, maxFds);
            long received = 0;
            try {
                while (received < lengthBytes) {
                    long n = receiver.receive(fd, buf.address() + received, lengthBytes - received, maxFds);
                    if (n < 0) {
                        Poll.poll(fd, Poll.POLLIN, -1);
                    } else if (n == 0) {
                        if (received == 0) {
                            return new ReceivedFully(true, NO_FDS, false);
                        }
                        throw new ErrnoException(
                                "recvmsg: end of stream after " + received + " of " + lengthBytes + " bytes",
                                Errno.ECONNRESET);
                    } else {
                        received += n;
                    }
                }
            } catch (RuntimeException e) {
                receiver.closeAll();
                throw e;
            }
            if (receiver.truncated) {
                receiver.closeAll();
                return new ReceivedFully(false, NO_FDS, true);
            }
            return new ReceivedFully(false, receiver.fds(), false);
        }
    }

    /**
     * {@code sendto(2)} of the first {@code lengthBytes} of {@code data} to the unix socket {@code path} (a leading NUL
     * names the abstract namespace), for an unconnected {@link #SOCK_DGRAM} socket. Retries on {@code EINTR}. A
     * datagram is sent whole or not at all.
     *
     * @param flags e.g. {@link #MSG_NOSIGNAL}, {@link #MSG_DONTWAIT}
     * @return bytes sent; -1 when a non-blocking send found no room ({@code EAGAIN})
     * @throws ErrnoException e.g. {@code ECONNREFUSED} or {@code ENOENT} when nothing is bound at {@code path}
     * @throws IllegalArgumentException when the path does not fit {@code sun_path}
     */
    public static long sendto(int fd, MemorySegment data, long lengthBytes, int flags, String path) {
        NativeSupport.checkNative(data, lengthBytes);
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment address = sockaddrUn(arena, path);
            int addressLength = sockaddrUnLength(path);
            while (true) {
                long n = (long) SENDTO.invokeExact(capture, fd, data, lengthBytes, flags, address, addressLength);
                if (n >= 0) {
                    return n;
                }
                int errno = NativeSupport.errno(capture);
                if (errno == Errno.EAGAIN) {
                    return -1;
                }
                if (errno != Errno.EINTR) {
                    throw new ErrnoException("sendto " + path, errno);
                }
            }
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /**
     * {@code getsockname(2)} of a unix socket: the path it is bound to, in the form {@link #bind} takes (a leading NUL
     * for an abstract name), or the empty string for an unnamed socket.
     *
     * @throws ErrnoException e.g. {@code ENOTSOCK}
     * @throws IllegalArgumentException when {@code fd} is not an {@link #AF_UNIX} socket
     */
    public static String getsockname(int fd) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment address = arena.allocate(SOCKADDR_UN_SIZE, 2);
            MemorySegment length = arena.allocateFrom(JAVA_INT, (int) SOCKADDR_UN_SIZE);
            int rc = (int) GETSOCKNAME.invokeExact(capture, fd, address, length);
            if (rc < 0) {
                throw new ErrnoException("getsockname", NativeSupport.errno(capture));
            }
            if (address.get(JAVA_SHORT, 0) != AF_UNIX) {
                throw new IllegalArgumentException("fd " + fd + " is not an AF_UNIX socket");
            }
            // the kernel may report a length larger than the buffer when it truncated: never read past the buffer
            int pathBytes = (int) Math.min(length.get(JAVA_INT, 0) - SUN_PATH_OFFSET, SUN_PATH_BYTES);
            if (pathBytes <= 0) {
                return "";
            }
            byte[] bytes = address.asSlice(SUN_PATH_OFFSET, pathBytes).toArray(JAVA_BYTE);
            if (bytes[0] == 0) {
                return new String(bytes, StandardCharsets.UTF_8);
            }
            int end = 0;
            while (end < bytes.length && bytes[end] != 0) {
                end++;
            }
            return new String(bytes, 0, end, StandardCharsets.UTF_8);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /** {@code getsockopt(fd, SOL_SOCKET, SO_PEERCRED)}: the peer's pid, uid and gid. */
    public static Ucred getpeercred(int fd) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ucred = arena.allocate(UCRED_SIZE, 4);
            MemorySegment length = arena.allocateFrom(JAVA_INT, (int) UCRED_SIZE);
            int rc = (int) GETSOCKOPT.invokeExact(capture, fd, SOL_SOCKET, SO_PEERCRED, ucred, length);
            if (rc < 0) {
                throw new ErrnoException("getsockopt SO_PEERCRED", NativeSupport.errno(capture));
            }
            return new Ucred(ucred.get(JAVA_INT, 0), ucred.get(JAVA_INT, 4), ucred.get(JAVA_INT, 8));
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /** {@code setsockopt(2)} with an int value (e.g. {@link #SO_SNDBUF}). */
    public static void setsockoptInt(int fd, int level, int optname, int value) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment optval = arena.allocateFrom(JAVA_INT, value);
            int rc = (int) SETSOCKOPT.invokeExact(capture, fd, level, optname, optval, Integer.BYTES);
            if (rc < 0) {
                throw new ErrnoException("setsockopt", NativeSupport.errno(capture));
            }
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /** {@code getsockopt(2)} of an int value. */
    public static int getsockoptInt(int fd, int level, int optname) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment optval = arena.allocate(JAVA_INT);
            MemorySegment length = arena.allocateFrom(JAVA_INT, Integer.BYTES);
            int rc = (int) GETSOCKOPT.invokeExact(capture, fd, level, optname, optval, length);
            if (rc < 0) {
                throw new ErrnoException("getsockopt", NativeSupport.errno(capture));
            }
            return optval.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /** {@code CMSG_ALIGN}: cmsg headers and data are aligned to {@code sizeof(size_t)}. */
    static long cmsgAlign(long lengthBytes) {
        return (lengthBytes + 7) & ~7L;
    }

    /** {@code CMSG_LEN(n)}: header plus {@code n} data bytes, unpadded. */
    static long cmsgLen(long dataBytes) {
        return CMSGHDR_SIZE + dataBytes;
    }

    /** {@code CMSG_SPACE(n)}: header plus {@code n} data bytes, padded. */
    static long cmsgSpace(long dataBytes) {
        return CMSGHDR_SIZE + cmsgAlign(dataBytes);
    }

    private static void checkMaxFds(int maxFds) {
        if (maxFds < 0 || maxFds > SCM_MAX_FD) {
            throw new IllegalArgumentException("maxFds must be in [0, " + SCM_MAX_FD + "]: " + maxFds);
        }
    }

    private static MemorySegment sockaddrUn(Arena arena, String path) {
        byte[] bytes = path.getBytes(StandardCharsets.UTF_8);
        boolean isAbstract = bytes.length > 0 && bytes[0] == 0;
        if (bytes.length == 0 || bytes.length > (isAbstract ? SUN_PATH_BYTES : SUN_PATH_BYTES - 1)) {
            throw new IllegalArgumentException(
                    "unix socket path must be 1.." + (SUN_PATH_BYTES - 1) + " bytes: " + path);
        }
        if (!isAbstract && path.indexOf('\0') >= 0) {
            throw new IllegalArgumentException("unix socket path contains a NUL character");
        }
        MemorySegment address = arena.allocate(SOCKADDR_UN_SIZE, 2);
        address.set(JAVA_SHORT, 0, (short) AF_UNIX);
        MemorySegment.copy(bytes, 0, address, JAVA_BYTE, SUN_PATH_OFFSET, bytes.length);
        return address;
    }

    private static int sockaddrUnLength(String path) {
        byte[] bytes = path.getBytes(StandardCharsets.UTF_8);
        boolean isAbstract = bytes[0] == 0;
        // a filesystem path includes its NUL terminator; an abstract name is exactly its bytes
        return (int) SUN_PATH_OFFSET + bytes.length + (isAbstract ? 0 : 1);
    }

    /** One recvmsg call at a time into caller memory, accumulating descriptors across calls. */
    private static final class Receiver {
        private final MemorySegment capture = NativeSupport.captureState();
        private final MemorySegment msg;
        private final MemorySegment iov;
        private final MemorySegment control;
        private int[] fds;
        private int fdCount;
        boolean truncated;

        Receiver(Arena arena, int maxFds) {
            msg = arena.allocate(MSGHDR_SIZE, 8);
            iov = arena.allocate(IovecArray.IOVEC_SIZE, 8);
            control = maxFds > 0 ? arena.allocate(cmsgSpace((long) maxFds * Integer.BYTES), 8) : MemorySegment.NULL;
            fds = new int[Math.max(maxFds, 1)];
        }

        /** One recvmsg; returns bytes (0 = EOF) or -1 on EAGAIN. */
        long receive(int fd, long address, long lengthBytes, int maxFds) {
            int room = maxFds - fdCount;
            long controlBytes = room > 0 ? cmsgSpace((long) room * Integer.BYTES) : 0;
            msg.fill((byte) 0);
            iov.set(JAVA_LONG, IovecArray.IOV_BASE_OFFSET, address);
            iov.set(JAVA_LONG, IovecArray.IOV_LEN_OFFSET, lengthBytes);
            msg.set(ADDRESS, MSG_IOV_OFFSET, iov);
            msg.set(JAVA_LONG, MSG_IOVLEN_OFFSET, 1L);
            msg.set(ADDRESS, MSG_CONTROL_OFFSET, controlBytes > 0 ? control : MemorySegment.NULL);
            msg.set(JAVA_LONG, MSG_CONTROLLEN_OFFSET, controlBytes);
            long n;
            while (true) {
                try {
                    n = (long) RECVMSG.invokeExact(capture, fd, msg, MSG_CMSG_CLOEXEC);
                } catch (Throwable t) {
                    throw NativeSupport.rethrow(t);
                }
                if (n >= 0) {
                    break;
                }
                int errno = NativeSupport.errno(capture);
                if (errno == Errno.EAGAIN) {
                    return -1;
                }
                if (errno != Errno.EINTR) {
                    throw new ErrnoException("recvmsg", errno);
                }
            }
            if ((msg.get(JAVA_INT, MSG_FLAGS_OFFSET) & MSG_CTRUNC) != 0) {
                truncated = true;
            }
            collectRights(Math.min(msg.get(JAVA_LONG, MSG_CONTROLLEN_OFFSET), controlBytes));
            return n;
        }

        /** Walks the cmsg chain the kernel filled ({@code CMSG_FIRSTHDR}/{@code CMSG_NXTHDR}), bounds-checked. */
        private void collectRights(long controlBytes) {
            long offset = 0;
            while (offset + CMSGHDR_SIZE <= controlBytes) {
                long cmsgLen = control.get(JAVA_LONG, offset + CMSG_LEN_OFFSET);
                if (cmsgLen < CMSGHDR_SIZE || cmsgLen > controlBytes - offset) {
                    break;
                }
                if (control.get(JAVA_INT, offset + CMSG_LEVEL_OFFSET) == SOL_SOCKET
                        && control.get(JAVA_INT, offset + CMSG_TYPE_OFFSET) == SCM_RIGHTS) {
                    int count = (int) ((cmsgLen - CMSGHDR_SIZE) / Integer.BYTES);
                    for (int i = 0; i < count; i++) {
                        add(control.get(JAVA_INT, offset + CMSGHDR_SIZE + (long) i * Integer.BYTES));
                    }
                }
                offset += cmsgAlign(cmsgLen);
            }
        }

        private void add(int fd) {
            if (fdCount == fds.length) {
                fds = Arrays.copyOf(fds, fds.length * 2);
            }
            fds[fdCount++] = fd;
        }

        int[] fds() {
            return fdCount == 0 ? NO_FDS : Arrays.copyOf(fds, fdCount);
        }

        void closeAll() {
            for (int i = 0; i < fdCount; i++) {
                try {
                    Unistd.close(fds[i]);
                } catch (ErrnoException e) {
                    // the descriptor is released either way; keep closing the others
                }
            }
            fdCount = 0;
        }
    }
}
