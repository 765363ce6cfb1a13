package io.vhostd.dist;

import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_INDIRECT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_NEXT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_WRITE;

import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.backend.TestFrontEnd;
import io.vhostd.vhost.proto.VhostUserFeature;
import io.vhostd.vhost.proto.VhostUserMemory;
import io.vhostd.vhost.proto.VhostUserMemoryRegion;
import io.vhostd.vhost.proto.VhostUserPayload;
import io.vhostd.vhost.proto.VhostUserProtocolFeature;
import io.vhostd.vhost.proto.VhostUserRequest;
import io.vhostd.vhost.proto.VhostUserU64;
import io.vhostd.vhost.proto.VhostUserVringAddr;
import io.vhostd.vhost.proto.VhostUserVringFd;
import io.vhostd.vhost.proto.VhostUserVringState;
import io.vhostd.vhost.virtio.VirtioBlk;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A vhost-user-blk front-end whose guest is hostile (issue #3 "Hostile input", the ring half): a real session
 * (SET_OWNER, features, SET_MEM_TABLE with a memfd, two split rings) on one controller of a running slave, then
 * malformed descriptor chains on queue 0 between well-formed reads, then queue 0's avail->idx moved impossibly far.
 *
 * <p>Guest memory is one memfd region of {@link #RAM_BYTES} at guest physical 0, filled with {@link #CANARY} except the
 * rings. The session keeps a shadow copy of everything it wrote; {@link #checkCanaries()} compares guest memory with it
 * and reports every byte the back-end changed outside the used rings and the device-writable buffers the chains named.
 * Every wait is bounded and on readiness (the call eventfd), never a sleep. Problems are collected, not thrown, so one
 * run reports all of them.
 */
final class HostileRingSession implements AutoCloseable {

    static final long RAM_BYTES = 4L << 20;
    /** Below the slave's segment cap ({@code max_segments}, 128): a descriptor loop is then caught as a loop. */
    static final int QUEUE_SIZE = 64;

    static final int NUM_QUEUES = 2;
    static final byte CANARY = 0x5A;
    /** Where the front-end "maps" guest memory (any value: the back-end only translates with it). */
    private static final long RAM_UVA = 0x7f55_0000_0000L;
    /** First guest physical address of buffers and indirect tables; the rings live below. */
    private static final long BUFFERS_GPA = 0x10_0000;

    private static final int DATA_BYTES = 4096;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** How a request must be answered. */
    enum Expect {
        /** Executed: status VIRTIO_BLK_S_OK, used len = data + 1, the data is the disk's. */
        OK,
        /**
         * Refused request whose status byte is reachable: used len 1, status VIRTIO_BLK_S_IOERR, no data moved. A
         * well-formed chain, or a malformed one whose last descriptor can still be located (virtio 1.2 §5.2.6: the
         * status is the chain's last byte; vhost-nvme split-virtqueue.md "Pop" step 5).
         */
        IOERR,
        /**
         * No status byte can be located (a loop, a next index out of range, an unreadable indirect table, a status
         * descriptor that is not device-writable): used len 0, the status byte (if any) untouched, no data moved.
         */
        REJECTED,
        /** The head itself is out of range: no used element can name it. */
        NO_USED
    }

    /** One request the guest made available. */
    private record Request(
            String name,
            int queue,
            int head,
            long dataGpa,
            int dataBytes,
            long statusGpa,
            long sector,
            Expect expect) {}

    private final Arena arena = Arena.ofShared();
    private final int memfd;
    private final MemorySegment ram;
    private final byte[] shadow = new byte[(int) RAM_BYTES];
    /** Ranges the back-end may write: [gpa, gpa + length). */
    private final List<long[]> writable = new ArrayList<>();

    private final TestFrontEnd fe;
    private final int[] kickFds = new int[NUM_QUEUES];
    private final int[] callFds = new int[NUM_QUEUES];
    private final int[] nextDesc = new int[NUM_QUEUES];
    private final int[] availIdx = new int[NUM_QUEUES];
    private final List<Request> requests = new ArrayList<>();
    private final byte[] disk;
    private final long diskBytes;
    private final Duration timeout;
    private long nextBuffer = BUFFERS_GPA;

    /**
     * Connects to {@code socketPath} and starts the session as QEMU would.
     *
     * @param disk the first bytes of the controller's disk (what a well-formed read must return)
     * @param diskBytes the disk's capacity
     * @param timeout the longest wait for any one answer of the back-end
     */
    HostileRingSession(String socketPath, byte[] disk, long diskBytes, Duration timeout) {
        this.disk = disk;
        this.diskBytes = diskBytes;
        this.timeout = timeout;
        memfd = Memfd.memfd_create("hostile-guest", Memfd.MFD_CLOEXEC);
        Unistd.ftruncate(memfd, RAM_BYTES);
        ram = Mman.mmap(RAM_BYTES, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, memfd, 0, arena);
        ram.fill(CANARY);
        Arrays.fill(shadow, CANARY);
        // rings start zeroed (avail->idx = used->idx = 0)
        write(descGpa(0), new byte[(int) (BUFFERS_GPA - descGpa(0))]);
        for (int q = 0; q < NUM_QUEUES; q++) {
            writable.add(new long[] {usedGpa(q), 4 + 8L * QUEUE_SIZE + 2});
            kickFds[q] = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
            callFds[q] = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        }
        fe = new TestFrontEnd(dial(socketPath));
        start();
    }

    private static long descGpa(int q) {
        return 0x1_0000L * (q + 1);
    }

    private static long availGpa(int q) {
        return descGpa(q) + 0x1000;
    }

    private static long usedGpa(int q) {
        return descGpa(q) + 0x2000;
    }

    private void start() {
        long offered = getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
        long protocol = getU64(VhostUserRequest.VHOST_USER_GET_PROTOCOL_FEATURES)
                & (VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_MQ_MASK
                        | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_REPLY_ACK_MASK);
        fe.send(VhostUserRequest.VHOST_USER_SET_PROTOCOL_FEATURES, false, new VhostUserU64(protocol));
        fe.send(VhostUserRequest.VHOST_USER_SET_OWNER, false, null);
        for (int q = 0; q < NUM_QUEUES; q++) {
            fe.send(VhostUserRequest.VHOST_USER_SET_VRING_CALL, false, new VhostUserVringFd(q, false), callFds[q]);
        }
        // no EVENT_IDX: every publication of used elements is signalled on the call eventfd
        long features = offered
                & (VirtioBlk.VIRTIO_F_VERSION_1_MASK
                        | VirtioBlk.VIRTIO_RING_F_INDIRECT_DESC_MASK
                        | VirtioBlk.VIRTIO_BLK_F_MQ_MASK
                        | VirtioBlk.VIRTIO_BLK_F_BLK_SIZE_MASK
                        | VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_MASK);
        ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(features));
        ack(
                VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                VhostUserMemory.of(List.of(new VhostUserMemoryRegion(0, RAM_BYTES, RAM_UVA, 0))),
                memfd);
        for (int q = 0; q < NUM_QUEUES; q++) {
            ack(VhostUserRequest.VHOST_USER_SET_VRING_NUM, new VhostUserVringState(q, QUEUE_SIZE));
            ack(VhostUserRequest.VHOST_USER_SET_VRING_BASE, new VhostUserVringState(q, 0));
            ack(
                    VhostUserRequest.VHOST_USER_SET_VRING_ADDR,
                    new VhostUserVringAddr(q, 0, RAM_UVA + descGpa(q), RAM_UVA + usedGpa(q), RAM_UVA + availGpa(q), 0));
            ack(VhostUserRequest.VHOST_USER_SET_VRING_KICK, new VhostUserVringFd(q, false), kickFds[q]);
        }
        for (int q = 0; q < NUM_QUEUES; q++) {
            ack(VhostUserRequest.VHOST_USER_SET_VRING_ENABLE, new VhostUserVringState(q, 1));
        }
    }

    // ---- the hostile chains ----

    /**
     * Makes the hostile chains of queue 0 available (with well-formed reads before and after them), kicks, and waits
     * until every chain that has a valid head is used. Returns the problems found in the answers.
     */
    List<String> runHostileChains() {
        int q = 0;
        int usedBefore = usedIdx(q);
        wellFormedRead(q, "well-formed read before the hostile chains", 8);

        // a descriptor loop: header -> data -> header -> ... (all device-readable: only the cycle is wrong)
        {
            long header = header(VirtioBlk.VIRTIO_BLK_T_OUT, 8);
            long data = buffer(DATA_BYTES, false);
            int a = takeDesc(q);
            int b = takeDesc(q);
            writeDesc(q, a, header, 16, VIRTQ_DESC_F_NEXT, b);
            writeDesc(q, b, data, DATA_BYTES, VIRTQ_DESC_F_NEXT, a);
            publish(new Request("descriptor loop", q, a, -1, 0, -1, 8, Expect.REJECTED));
        }
        // a chain longer than the queue: an indirect table of QUEUE_SIZE + 2 entries
        {
            int entries = QUEUE_SIZE + 2;
            long header = header(VirtioBlk.VIRTIO_BLK_T_IN, 8);
            long data = buffer(512 * (entries - 2), true);
            long status = buffer(1, true);
            long table = buffer(16 * entries, false);
            writeIndirectEntry(table, 0, header, 16, VIRTQ_DESC_F_NEXT, 1);
            for (int i = 1; i < entries - 1; i++) {
                writeIndirectEntry(table, i, data + 512L * (i - 1), 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, i + 1);
            }
            writeIndirectEntry(table, entries - 1, status, 1, VIRTQ_DESC_F_WRITE, 0);
            int head = takeDesc(q);
            writeDesc(q, head, table, 16 * entries, VIRTQ_DESC_F_INDIRECT, 0);
            publish(new Request(
                    "chain longer than the queue (indirect table of " + entries + " entries)",
                    q,
                    head,
                    data,
                    512 * (entries - 2),
                    status,
                    8,
                    Expect.REJECTED));
        }
        // a data buffer outside the memory table: the status descriptor after it is still reachable
        rejectedRead(q, "buffer outside the memory table (1 TiB)", 1L << 40, DATA_BYTES);
        // a data buffer that starts inside guest memory and ends outside it
        rejectedRead(q, "buffer across the end of guest memory", RAM_BYTES - 100, DATA_BYTES);
        // addr + len passes 2^64
        rejectedRead(q, "length overflow (addr + len wraps)", 0xFFFF_FFFF_FFFF_F000L, 0x2000);
        // indirect inside indirect
        {
            long header = header(VirtioBlk.VIRTIO_BLK_T_IN, 8);
            long data = buffer(DATA_BYTES, true);
            long status = buffer(1, true);
            long inner = buffer(16, false);
            writeIndirectEntry(inner, 0, data, DATA_BYTES, VIRTQ_DESC_F_WRITE, 0);
            long outer = buffer(16 * 3, false);
            writeIndirectEntry(outer, 0, header, 16, VIRTQ_DESC_F_NEXT, 1);
            writeIndirectEntry(outer, 1, inner, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 2);
            writeIndirectEntry(outer, 2, status, 1, VIRTQ_DESC_F_WRITE, 0);
            int head = takeDesc(q);
            writeDesc(q, head, outer, 16 * 3, VIRTQ_DESC_F_INDIRECT, 0);
            publish(new Request("indirect inside indirect", q, head, data, DATA_BYTES, status, 8, Expect.IOERR));
        }
        // a next index beyond the descriptor table
        {
            long header = header(VirtioBlk.VIRTIO_BLK_T_IN, 8);
            int head = takeDesc(q);
            writeDesc(q, head, header, 16, VIRTQ_DESC_F_NEXT, QUEUE_SIZE + 100);
            publish(new Request("next beyond the descriptor table", q, head, -1, 0, -1, 8, Expect.REJECTED));
        }
        // the header in a device-writable descriptor
        {
            long header = header(VirtioBlk.VIRTIO_BLK_T_IN, 8);
            writable.add(new long[] {header, 16});
            long data = buffer(DATA_BYTES, true);
            long status = buffer(1, true);
            int h = takeDesc(q);
            int d = takeDesc(q);
            int s = takeDesc(q);
            writeDesc(q, h, header, 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, d);
            writeDesc(q, d, data, DATA_BYTES, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, s);
            writeDesc(q, s, status, 1, VIRTQ_DESC_F_WRITE, 0);
            publish(new Request("header device-writable", q, h, data, DATA_BYTES, status, 8, Expect.IOERR));
        }
        // the status byte in a device-readable descriptor
        {
            long header = header(VirtioBlk.VIRTIO_BLK_T_IN, 8);
            long data = buffer(DATA_BYTES, true);
            long status = buffer(1, false);
            int h = takeDesc(q);
            int d = takeDesc(q);
            int s = takeDesc(q);
            writeDesc(q, h, header, 16, VIRTQ_DESC_F_NEXT, d);
            writeDesc(q, d, data, DATA_BYTES, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, s);
            writeDesc(q, s, status, 1, 0, 0);
            publish(new Request("status device-readable", q, h, data, DATA_BYTES, status, 8, Expect.REJECTED));
        }
        // a well-formed read past the end of the disk
        {
            long sector = diskBytes / VirtioBlk.SECTOR_SIZE;
            long header = header(VirtioBlk.VIRTIO_BLK_T_IN, sector);
            long data = buffer(DATA_BYTES, true);
            long status = buffer(1, true);
            int head = chain(q, header, data, DATA_BYTES, status);
            publish(new Request(
                    "read past the end of the disk", q, head, data, DATA_BYTES, status, sector, Expect.IOERR));
        }
        // an avail ring entry naming a head beyond the queue
        publish(new Request("avail entry beyond the queue", q, QUEUE_SIZE + 44, -1, 0, -1, 0, Expect.NO_USED));

        wellFormedRead(q, "well-formed read after the hostile chains", 16);
        kick(q);
        int withHead = (int) requests.stream()
                .filter(r -> r.queue() == q && r.expect() != Expect.NO_USED)
                .count();
        List<String> problems = new ArrayList<>();
        if (!awaitUsed(q, usedBefore + withHead)) {
            problems.add("queue 0: used->idx " + usedIdx(q) + " after " + timeout + ", expected "
                    + (usedBefore + withHead) + " (every chain with a valid head answered)");
        }
        problems.addAll(checkAnswers(q, usedBefore));
        return problems;
    }

    /**
     * Moves queue 0's avail->idx {@code QUEUE_SIZE + 1000} entries ahead of what the back-end consumed (virtio 1.2
     * §2.7.13: the driver never has more than the queue size available) and kicks. The back-end must stop that queue
     * (the caller watches the log for it) without touching anything.
     */
    void breakAvailIdx() {
        int q = 0;
        availIdx[q] = (availIdx[q] + QUEUE_SIZE + 1000) & 0xFFFF;
        writeU16(availGpa(q) + 2, availIdx[q]);
        kick(q);
    }

    /** A well-formed read on queue {@code q}, waited for and checked; returns the problems. */
    List<String> readAndCheck(int q, String name, long sector) {
        int usedBefore = usedIdx(q);
        wellFormedRead(q, name, sector);
        kick(q);
        List<String> problems = new ArrayList<>();
        if (!awaitUsed(q, usedBefore + 1)) {
            problems.add("queue " + q + ": '" + name + "' not answered within " + timeout);
            return problems;
        }
        problems.addAll(checkAnswers(q, usedBefore));
        return problems;
    }

    /**
     * GET_VRING_BASE of queue {@code q}: the back-end must answer (a stopped queue too) with the avail index it stopped
     * at. Returns the answer, or -1 (and a problem) if none came.
     */
    long vringBase(int q, List<String> problems) {
        fe.send(VhostUserRequest.VHOST_USER_GET_VRING_BASE, false, new VhostUserVringState(q, 0));
        if (!readable()) {
            problems.add("GET_VRING_BASE " + q + ": no reply within " + timeout);
            return -1;
        }
        byte[] reply = fe.reply(VhostUserRequest.VHOST_USER_GET_VRING_BASE);
        if (reply.length != VhostUserVringState.SIZE_BYTES) {
            problems.add("GET_VRING_BASE " + q + ": reply of " + reply.length + " bytes");
            return -1;
        }
        return MemorySegment.ofArray(reply).get(U32, 4) & 0xFFFFFFFFL;
    }

    /** used->idx of queue {@code q}. */
    int usedIdx(int q) {
        return ram.get(U16, usedGpa(q) + 2) & 0xFFFF;
    }

    /**
     * Every byte of guest memory that differs from what this front-end wrote, outside the used rings and the
     * device-writable buffers of the chains: a few examples and the count.
     */
    List<String> checkCanaries() {
        byte[] now = ram.toArray(ValueLayout.JAVA_BYTE);
        List<String> problems = new ArrayList<>();
        long changed = 0;
        for (int i = 0; i < now.length; i++) {
            if (now[i] != shadow[i] && !isWritable(i)) {
                if (changed < 8) {
                    problems.add(String.format(
                            "guest byte 0x%x changed from 0x%02x to 0x%02x outside any buffer the guest named",
                            i, shadow[i], now[i]));
                }
                changed++;
            }
        }
        if (changed > 8) {
            problems.add(changed + " guest bytes changed outside the buffers the guest named");
        }
        return problems;
    }

    private boolean isWritable(long gpa) {
        for (long[] range : writable) {
            if (gpa >= range[0] && gpa < range[0] + range[1]) {
                return true;
            }
        }
        return false;
    }

    private List<String> checkAnswers(int q, int usedFrom) {
        List<String> problems = new ArrayList<>();
        int usedTo = usedIdx(q);
        for (Request r : requests) {
            if (r.queue() != q) {
                continue;
            }
            int found = -1;
            int count = 0;
            for (int i = usedFrom; i != usedTo; i = (i + 1) & 0xFFFF) {
                long elem = usedGpa(q) + 4 + 8L * (i % QUEUE_SIZE);
                if (ram.get(U32, elem) == r.head()) {
                    found = ram.get(U32, elem + 4);
                    count++;
                }
            }
            if (r.expect() == Expect.NO_USED) {
                if (count > 0) {
                    problems.add("'" + r.name() + "': a used element names head " + r.head());
                }
                continue;
            }
            if (count == 0) {
                // requests of earlier calls were answered before usedFrom
                continue;
            }
            if (count > 1) {
                problems.add("'" + r.name() + "': answered " + count + " times");
            }
            int status = r.statusGpa() < 0 ? -1 : ram.get(ValueLayout.JAVA_BYTE, r.statusGpa()) & 0xFF;
            switch (r.expect()) {
                case OK -> {
                    if (status != VirtioBlk.VIRTIO_BLK_S_OK || found != r.dataBytes() + 1) {
                        problems.add("'" + r.name() + "': status " + status + ", used len " + found + " (want OK and "
                                + (r.dataBytes() + 1) + ")");
                    } else if (!Arrays.equals(
                            ram.asSlice(r.dataGpa(), r.dataBytes()).toArray(ValueLayout.JAVA_BYTE),
                            Arrays.copyOfRange(disk, (int) (r.sector() * VirtioBlk.SECTOR_SIZE), (int)
                                    (r.sector() * VirtioBlk.SECTOR_SIZE + r.dataBytes())))) {
                        problems.add("'" + r.name() + "': the data read is not the disk's");
                    }
                }
                case IOERR -> {
                    if (status != VirtioBlk.VIRTIO_BLK_S_IOERR || found != 1) {
                        problems.add(
                                "'" + r.name() + "': status " + status + ", used len " + found + " (want IOERR and 1)");
                    }
                    problems.addAll(noDataMoved(r));
                }
                case REJECTED -> {
                    if (found != 0) {
                        problems.add("'" + r.name() + "': used len " + found + " (want 0)");
                    }
                    if (status >= 0 && status != (CANARY & 0xFF)) {
                        problems.add("'" + r.name() + "': status byte " + status + " (want untouched)");
                    }
                    problems.addAll(noDataMoved(r));
                }
                case NO_USED -> {}
            }
        }
        return problems;
    }

    /** One line per request: its name, head, how it was answered (used len, status byte). */
    List<String> describeAnswers() {
        List<String> lines = new ArrayList<>();
        for (Request r : requests) {
            int q = r.queue();
            String used = "no used element";
            for (int i = 0; i != usedIdx(q); i = (i + 1) & 0xFFFF) {
                long elem = usedGpa(q) + 4 + 8L * (i % QUEUE_SIZE);
                if (ram.get(U32, elem) == r.head()) {
                    used = "used len " + ram.get(U32, elem + 4);
                }
            }
            String status = r.statusGpa() < 0
                    ? ""
                    : String.format(", status byte 0x%02x", ram.get(ValueLayout.JAVA_BYTE, r.statusGpa()) & 0xFF);
            lines.add("queue " + q + " head " + r.head() + " '" + r.name() + "' (want " + r.expect() + "): " + used
                    + status);
        }
        return lines;
    }

    /** The data buffer of a refused request holds no disk data: at most one byte (a status guess) changed. */
    private List<String> noDataMoved(Request r) {
        if (r.dataGpa() < 0) {
            return List.of();
        }
        byte[] data = ram.asSlice(r.dataGpa(), r.dataBytes()).toArray(ValueLayout.JAVA_BYTE);
        int changed = 0;
        for (byte b : data) {
            if (b != CANARY) {
                changed++;
            }
        }
        return changed <= 1
                ? List.of()
                : List.of("'" + r.name() + "': " + changed + " bytes of its data buffer written, yet it was refused");
    }

    // ---- guest driver ----

    private void wellFormedRead(int q, String name, long sector) {
        long header = header(VirtioBlk.VIRTIO_BLK_T_IN, sector);
        long data = buffer(DATA_BYTES, true);
        long status = buffer(1, true);
        int head = chain(q, header, data, DATA_BYTES, status);
        publish(new Request(name, q, head, data, DATA_BYTES, status, sector, Expect.OK));
    }

    /**
     * A read whose data descriptor is {@code (addr, len)} as given: the chain is malformed, but its status descriptor
     * (after the data) is still reachable, so it is answered IOERR with used len 1.
     */
    private void rejectedRead(int q, String name, long addr, int len) {
        long header = header(VirtioBlk.VIRTIO_BLK_T_IN, 8);
        long status = buffer(1, true);
        int head = chain(q, header, addr, len, status);
        publish(new Request(name, q, head, -1, 0, status, 8, Expect.IOERR));
    }

    /** header (readable) -> data (writable) -> status (writable), direct descriptors; returns the head. */
    private int chain(int q, long header, long data, int dataBytes, long status) {
        int h = takeDesc(q);
        int d = takeDesc(q);
        int s = takeDesc(q);
        writeDesc(q, h, header, 16, VIRTQ_DESC_F_NEXT, d);
        writeDesc(q, d, data, dataBytes, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, s);
        writeDesc(q, s, status, 1, VIRTQ_DESC_F_WRITE, 0);
        return h;
    }

    /** A {@code struct virtio_blk_req} header in a fresh readable buffer. */
    private long header(int type, long sector) {
        long gpa = buffer(16, false);
        byte[] h = new byte[16];
        MemorySegment m = MemorySegment.ofArray(h);
        m.set(U32, 0, type);
        m.set(U64, 8, sector);
        write(gpa, h);
        return gpa;
    }

    /** {@code bytes} of guest memory (canary-filled), 64 bytes of canary after it; writable ones are recorded. */
    private long buffer(int bytes, boolean deviceWritable) {
        long gpa = nextBuffer;
        nextBuffer = (nextBuffer + bytes + 64 + 63) & -64L;
        if (nextBuffer > RAM_BYTES) {
            throw new IllegalStateException("test bug: guest memory full");
        }
        if (deviceWritable) {
            writable.add(new long[] {gpa, bytes});
        }
        return gpa;
    }

    private int takeDesc(int q) {
        int d = nextDesc[q];
        nextDesc[q] = (d + 1) % QUEUE_SIZE;
        return d;
    }

    private void writeDesc(int q, int index, long addr, int len, int flags, int next) {
        writeIndirectEntry(descGpa(q), index, addr, len, flags, next);
    }

    private void writeIndirectEntry(long tableGpa, int index, long addr, int len, int flags, int next) {
        byte[] d = new byte[16];
        MemorySegment m = MemorySegment.ofArray(d);
        m.set(U64, 0, addr);
        m.set(U32, 8, len);
        m.set(U16, 12, (short) flags);
        m.set(U16, 14, (short) next);
        write(tableGpa + 16L * index, d);
    }

    /** Puts the request's head in the next avail slot and publishes avail->idx (the store is the publication). */
    private void publish(Request r) {
        requests.add(r);
        int q = r.queue();
        writeU16(availGpa(q) + 4 + 2L * (availIdx[q] % QUEUE_SIZE), r.head());
        availIdx[q] = (availIdx[q] + 1) & 0xFFFF;
        // the slave reads the ring from another process: the descriptor and ring entry stores above must be visible
        // before avail->idx; MemorySegment.set is a plain store, so fence the way a driver's wmb() does
        VarHandle.releaseFence();
        writeU16(availGpa(q) + 2, availIdx[q]);
    }

    private void kick(int q) {
        Eventfd.eventfd_write(kickFds[q], 1);
    }

    /** Waits (bounded, on the call eventfd) until used->idx of {@code q} reaches {@code target}. */
    private boolean awaitUsed(int q, int target) {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (((usedIdx(q) - target) & 0x8000) != 0) {
            long leftMs = (deadlineNs - System.nanoTime()) / 1_000_000;
            if (leftMs <= 0) {
                return false;
            }
            if ((Poll.poll(callFds[q], Poll.POLLIN, (int) Math.min(leftMs, 100)) & Poll.POLLIN) != 0) {
                Eventfd.eventfd_read(callFds[q]);
            }
        }
        return true;
    }

    private void write(long gpa, byte[] bytes) {
        MemorySegment.copy(MemorySegment.ofArray(bytes), 0, ram, gpa, bytes.length);
        System.arraycopy(bytes, 0, shadow, (int) gpa, bytes.length);
    }

    private void writeU16(long gpa, int value) {
        byte[] b = new byte[2];
        MemorySegment.ofArray(b).set(U16, 0, (short) value);
        write(gpa, b);
    }

    // ---- vhost-user ----

    private boolean readable() {
        return (Poll.poll(fe.socketFd(), Poll.POLLIN, (int) timeout.toMillis()) & (Poll.POLLIN | Poll.POLLHUP)) != 0;
    }

    private long getU64(VhostUserRequest request) {
        fe.send(request, false, null);
        if (!readable()) {
            throw new IllegalStateException("no reply to " + request.name() + " within " + timeout);
        }
        return fe.replyU64(request.id());
    }

    private void ack(VhostUserRequest request, VhostUserPayload payload, int... fds) {
        fe.send(request, true, payload, fds);
        if (!readable()) {
            throw new IllegalStateException("no REPLY_ACK to " + request.name() + " within " + timeout);
        }
        long status = fe.replyU64(request.id());
        if (status != 0) {
            throw new IllegalStateException(request.name() + " failed: REPLY_ACK " + status);
        }
    }

    private static int dial(String socketPath) {
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        try {
            Socket.connect(fd, socketPath);
            return fd;
        } catch (RuntimeException e) {
            Unistd.close(fd);
            throw e;
        }
    }

    /** Ends the session (the back-end sees the connection close) and frees guest memory and the eventfds. */
    @Override
    public void close() {
        fe.close();
        for (int q = 0; q < NUM_QUEUES; q++) {
            Unistd.close(kickFds[q]);
            Unistd.close(callFds[q]);
        }
        Unistd.close(memfd);
        arena.close();
    }
}
