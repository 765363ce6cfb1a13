package io.vhostd.shm.linux;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.IntConsumer;

/**
 * Exits of thread groups as the kernel's per-task statistics interface reports them (generic netlink family {@code
 * TASKSTATS}, {@code Documentation/accounting/taskstats.rst}, {@code <linux/taskstats.h>}): a listener registered for
 * a set of CPUs ({@code TASKSTATS_CMD_ATTR_REGISTER_CPUMASK}) gets a {@code TASKSTATS_CMD_NEW} message for each task
 * that exits on them, and with it a {@code TASKSTATS_TYPE_AGGR_TGID} record when the last thread of a multi-threaded
 * process exits.
 *
 * <p>Why it is used (issue #4): the kernel sends that record from {@code do_exit} before it tears the process's
 * memory down ({@code taskstats_exit} comes before {@code exit_mm}), while a pidfd becomes readable and {@code
 * waitpid} returns only after it. For a JVM of 120 - 180 MB resident that teardown takes 10 - 30 ms on a busy 2-vCPU
 * host; the record arrives 0.3 - 3 ms after a SIGKILL. When it is sent every thread of the process has passed {@code
 * exit_signals} ({@code signal->live} reached 0): none runs user code again.
 *
 * <p>Needs CAP_NET_ADMIN and the initial user and pid namespaces (the kernel refuses a listener elsewhere); {@link
 * #listenForExits} throws then, and callers fall back to the pidfd. Messages may be lost when the socket's buffer is
 * full (every exit on the host is reported): the record is an early hint, never the only one.
 */
public final class Taskstats implements AutoCloseable {
    /** {@code NLMSG_ERROR}: an error or, with error 0, an acknowledgement. */
    static final int NLMSG_ERROR = 2;

    /** {@code GENL_ID_CTRL}: the generic netlink controller's family id. */
    static final int GENL_ID_CTRL = 0x10;

    static final int NLM_F_REQUEST = 1;
    static final int NLM_F_ACK = 4;

    static final int CTRL_CMD_NEWFAMILY = 1;
    static final int CTRL_CMD_GETFAMILY = 3;
    static final int CTRL_ATTR_FAMILY_ID = 1;
    static final int CTRL_ATTR_FAMILY_NAME = 2;

    static final int TASKSTATS_CMD_GET = 1;
    static final int TASKSTATS_CMD_NEW = 2;
    static final int TASKSTATS_CMD_ATTR_REGISTER_CPUMASK = 3;
    static final int TASKSTATS_TYPE_TGID = 2;
    static final int TASKSTATS_TYPE_AGGR_TGID = 5;

    /** {@code sizeof(struct nlmsghdr)}: len u32, type u16, flags u16, seq u32, pid u32. */
    static final int NLMSG_HDR_BYTES = 16;

    /** {@code sizeof(struct genlmsghdr)}: cmd u8, version u8, reserved u16. */
    static final int GENL_HDR_BYTES = 4;

    /** {@code sizeof(struct nlattr)}: len u16, type u16 (the type's two top bits are flags). */
    static final int NLA_HDR_BYTES = 4;

    static final int NLA_TYPE_MASK = 0x3FFF;

    /** Receive buffer: a datagram per exit, each under 1 KiB; 64 KiB holds any datagram the kernel sends here. */
    private static final int RECEIVE_BYTES = 64 * 1024;

    /** How long the kernel may take to answer the family lookup and the registration. */
    private static final int ANSWER_TIMEOUT_MS = 2_000;

    /** The socket's receive buffer: room for a burst of exits on a busy host before the kernel drops some. */
    private static final int SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;

    private final int fd;
    private final int familyId;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment buf = arena.allocate(RECEIVE_BYTES, 8);
    private volatile boolean closed;

    private Taskstats(int fd, int familyId) {
        this.fd = fd;
        this.familyId = familyId;
    }

    /**
     * A listener for the exits on every possible CPU ({@code /sys/devices/system/cpu/possible}).
     *
     * @throws ErrnoException if the kernel refuses (EPERM without CAP_NET_ADMIN, EINVAL outside the initial
     *     namespaces, ENOENT without CONFIG_TASKSTATS, EPROTONOSUPPORT without generic netlink)
     * @throws IllegalStateException if an answer is not what the interface specifies
     */
    public static Taskstats listenForExits() {
        String cpus;
        try {
            cpus = Files.readString(Path.of("/sys/devices/system/cpu/possible"), StandardCharsets.US_ASCII)
                    .strip();
        } catch (IOException e) {
            throw new IllegalStateException("cannot read the possible CPUs: " + e.getMessage(), e);
        }
        int fd = Netlink.open(Netlink.NETLINK_GENERIC);
        try {
            try {
                // past net.core.rmem_max: the listener has CAP_NET_ADMIN anyway
                Socket.setsockoptInt(fd, Socket.SOL_SOCKET, Socket.SO_RCVBUFFORCE, SOCKET_BUFFER_BYTES);
            } catch (ErrnoException e) {
                Socket.setsockoptInt(fd, Socket.SOL_SOCKET, Socket.SO_RCVBUF, SOCKET_BUFFER_BYTES);
            }
            Taskstats t;
            try (Arena a = Arena.ofConfined()) {
                MemorySegment scratch = a.allocate(RECEIVE_BYTES, 8);
                int family =
                        request(fd, scratch, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_NAME, "TASKSTATS", 1);
                if (family <= GENL_ID_CTRL) {
                    // 0 (no family attribute) or the controller's own id: a registration sent there matches nothing
                    throw new IllegalStateException("TASKSTATS: family lookup answered no family id");
                }
                request(fd, scratch, family, TASKSTATS_CMD_GET, TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, cpus, 2);
                t = new Taskstats(fd, family);
            }
            return t;
        } catch (RuntimeException e) {
            Unistd.close(fd);
            throw e;
        }
    }

    /**
     * Sends one generic netlink request with one string attribute and an acknowledgement asked for; returns the
     * family id of a {@code CTRL_CMD_NEWFAMILY} answer, or 0 for a bare acknowledgement.
     */
    private static int request(int fd, MemorySegment scratch, int type, int cmd, int attrType, String value, int seq) {
        byte[] v = (value + "\0").getBytes(StandardCharsets.US_ASCII);
        int attrLen = NLA_HDR_BYTES + v.length;
        int len = NLMSG_HDR_BYTES + GENL_HDR_BYTES + align4(attrLen);
        scratch.asSlice(0, len).fill((byte) 0);
        scratch.set(U32, 0, len);
        scratch.set(U16, 4, (short) type);
        scratch.set(U16, 6, (short) (NLM_F_REQUEST | NLM_F_ACK));
        scratch.set(U32, 8, seq);
        scratch.set(ValueLayout.JAVA_BYTE, NLMSG_HDR_BYTES, (byte) cmd);
        scratch.set(ValueLayout.JAVA_BYTE, NLMSG_HDR_BYTES + 1, (byte) 1);
        long a = NLMSG_HDR_BYTES + GENL_HDR_BYTES;
        scratch.set(U16, a, (short) attrLen);
        scratch.set(U16, a + 2, (short) attrType);
        MemorySegment.copy(v, 0, scratch, ValueLayout.JAVA_BYTE, a + NLA_HDR_BYTES, v.length);
        Netlink.sendToKernel(fd, scratch, len);
        int family = 0;
        // the answer (a family), then the acknowledgement, or an error; exit records may come in between (once the
        // registration took effect) and are skipped: only messages with this sequence number count
        long deadline = System.nanoTime() + ANSWER_TIMEOUT_MS * 1_000_000L;
        while (true) {
            long leftMs = (deadline - System.nanoTime()) / 1_000_000L;
            if (leftMs <= 0 || (Poll.poll(fd, Poll.POLLIN, (int) leftMs) & Poll.POLLIN) == 0) {
                throw new IllegalStateException("TASKSTATS: no answer from the kernel in " + ANSWER_TIMEOUT_MS + " ms");
            }
            Netlink.Received r = Netlink.receive(fd, scratch, Socket.MSG_DONTWAIT);
            if (r == null || r.senderPortId() != 0) {
                continue;
            }
            Answer answer = answer(scratch, r.lengthBytes(), seq);
            if (answer.errno() > 0) {
                throw new ErrnoException(
                        "TASKSTATS " + (type == GENL_ID_CTRL ? "family lookup" : "registration"), answer.errno());
            }
            if (answer.familyId() > 0) {
                family = answer.familyId();
            }
            if (answer.acknowledged()) {
                return family;
            }
        }
    }

    /**
     * What a reply to {@link #request} holds.
     *
     * @param errno a positive errno from an {@code NLMSG_ERROR}, else 0
     * @param acknowledged an {@code NLMSG_ERROR} with error 0 was seen
     * @param familyId the {@code CTRL_ATTR_FAMILY_ID} of a {@code CTRL_CMD_NEWFAMILY}, else 0
     */
    record Answer(int errno, boolean acknowledged, int familyId) {}

    /**
     * Parses a reply datagram of {@code lengthBytes} (netlink messages back to back; malformed ones end the walk);
     * only messages with sequence number {@code seq} count (not an exit record, not a late answer).
     */
    static Answer answer(MemorySegment buf, long lengthBytes, int seq) {
        int[] errno = {0};
        boolean[] ack = {false};
        int[] family = {0};
        messages(buf, lengthBytes, (type, off, len) -> {
            if (buf.get(U32, off + 8) != seq) {
                return;
            }
            if (type == NLMSG_ERROR && len >= NLMSG_HDR_BYTES + 4) {
                int error = buf.get(U32, off + NLMSG_HDR_BYTES);
                if (error == 0) {
                    ack[0] = true;
                } else {
                    errno[0] = -error;
                }
            } else if (isGenl(buf, type, off, len, GENL_ID_CTRL, CTRL_CMD_NEWFAMILY)) {
                attributes(buf, off + NLMSG_HDR_BYTES + GENL_HDR_BYTES, off + len, (attrType, at, attrLen) -> {
                    if (attrType == CTRL_ATTR_FAMILY_ID && attrLen >= 2) {
                        family[0] = buf.get(U16, at) & 0xFFFF;
                    }
                });
            }
        });
        return new Answer(errno[0], ack[0], family[0]);
    }

    /**
     * Calls {@code exited} with the thread group id of each {@code TASKSTATS_TYPE_AGGR_TGID} record in a datagram of
     * {@code lengthBytes} from the kernel: the last thread of that process is exiting. Messages of another family or
     * command, and malformed messages and attributes (lengths that do not fit), are skipped.
     */
    static void threadGroupExits(MemorySegment buf, long lengthBytes, int familyId, IntConsumer exited) {
        messages(buf, lengthBytes, (type, off, len) -> {
            if (!isGenl(buf, type, off, len, familyId, TASKSTATS_CMD_NEW)) {
                return;
            }
            attributes(buf, off + NLMSG_HDR_BYTES + GENL_HDR_BYTES, off + len, (attrType, at, attrLen) -> {
                if (attrType == TASKSTATS_TYPE_AGGR_TGID) {
                    attributes(buf, at, at + attrLen, (inner, innerAt, innerLen) -> {
                        if (inner == TASKSTATS_TYPE_TGID && innerLen >= 4) {
                            exited.accept(buf.get(U32, innerAt));
                        }
                    });
                }
            });
        });
    }

    /** Whether the message at {@code off} of {@code type} and {@code len} is a generic netlink {@code cmd} of {@code family}. */
    private static boolean isGenl(MemorySegment buf, int type, long off, long len, int family, int cmd) {
        return type == family
                && len >= NLMSG_HDR_BYTES + GENL_HDR_BYTES
                && (buf.get(ValueLayout.JAVA_BYTE, off + NLMSG_HDR_BYTES) & 0xFF) == cmd;
    }

    @FunctionalInterface
    interface MessageVisitor {
        /** One netlink message: its type, where its header starts and its whole length (header included). */
        void visit(int type, long offset, long lengthBytes);
    }

    /** Walks the netlink messages of a datagram of {@code lengthBytes}; stops at one whose length does not fit. */
    static void messages(MemorySegment buf, long lengthBytes, MessageVisitor visitor) {
        long off = 0;
        while (off + NLMSG_HDR_BYTES <= lengthBytes) {
            long len = Integer.toUnsignedLong(buf.get(U32, off));
            if (len < NLMSG_HDR_BYTES || off + len > lengthBytes) {
                return;
            }
            visitor.visit(buf.get(U16, off + 4) & 0xFFFF, off, len);
            off += align4(len);
        }
    }

    @FunctionalInterface
    interface AttributeVisitor {
        /** One attribute: its type (flags removed), where its payload starts and its payload length. */
        void visit(int type, long payloadOffset, long payloadBytes);
    }

    /** Walks the attributes in {@code [from, to)}; stops at one whose length does not fit. */
    static void attributes(MemorySegment buf, long from, long to, AttributeVisitor visitor) {
        long at = from;
        while (at + NLA_HDR_BYTES <= to) {
            int len = buf.get(U16, at) & 0xFFFF;
            if (len < NLA_HDR_BYTES || at + len > to) {
                return;
            }
            visitor.visit(buf.get(U16, at + 2) & NLA_TYPE_MASK, at + NLA_HDR_BYTES, len - NLA_HDR_BYTES);
            at += align4(len);
        }
    }

    private static long align4(long n) {
        return (n + 3) & ~3L;
    }

    private static int align4(int n) {
        return (n + 3) & ~3;
    }

    /** The socket, for {@link Poll#poll}: readable when an exit was reported. */
    public int fd() {
        return fd;
    }

    /**
     * Reads every datagram waiting (never blocks) and calls {@code exited} with the thread group id of each process
     * whose last thread is exiting. Datagrams not from the kernel are dropped.
     *
     * @return false once the kernel dropped messages for want of buffer space (ENOBUFS; some exits were not reported),
     *     true otherwise
     * @throws IllegalStateException after {@link #close()}
     */
    public boolean drain(IntConsumer exited) {
        if (closed) {
            throw new IllegalStateException("TASKSTATS listener closed");
        }
        boolean complete = true;
        while (true) {
            Netlink.Received r;
            try {
                r = Netlink.receive(fd, buf, Socket.MSG_DONTWAIT);
            } catch (ErrnoException e) {
                if (e.errno() == Errno.ENOBUFS) {
                    complete = false;
                    continue;
                }
                throw e;
            }
            if (r == null) {
                return complete;
            }
            if (r.senderPortId() == 0) {
                threadGroupExits(buf, r.lengthBytes(), familyId, exited);
            }
        }
    }

    /** Closes the socket (the kernel forgets the listener). Idempotent; not while another thread is in {@link #drain}. */
    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            Unistd.close(fd);
            arena.close();
        }
    }
}
