package io.vhostd.vhost.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.proto.VhostUserMemRegMsg;
import io.vhostd.vhost.proto.VhostUserMemory;
import io.vhostd.vhost.proto.VhostUserMemoryRegion;
import io.vhostd.vhost.proto.VhostUserRequest;
import io.vhostd.vhost.proto.VhostUserU64;
import io.vhostd.vhost.proto.VhostUserVringAddr;
import io.vhostd.vhost.proto.VhostUserVringFd;
import io.vhostd.vhost.proto.VhostUserVringState;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A back-end on its own thread over a socketpair, a {@link TestFrontEnd} on the other end, a {@link
 * FakeVhostUserDevice}, and guest RAM in a memfd that the test maps too.
 */
final class BackendHarness implements AutoCloseable {
    /** Guest RAM: 1 MiB at guest physical 0, at this front-end virtual address. */
    static final long RAM_BYTES = 1 << 20;

    static final long RAM_UVA = 0x7f12_3400_0000L;
    static final int QUEUE_SIZE = 128;

    final FakeVhostUserDevice device;
    final VhostUserBackend backend;
    final TestFrontEnd frontEnd;
    final Thread thread;
    final int memfd;
    final MemorySegment ram;
    /** The test's ends: kick, call and err eventfds per queue, and the back-end channel's other end. */
    final List<Integer> testFds = new ArrayList<>();

    private final Arena arena = Arena.ofShared();

    BackendHarness(FakeVhostUserDevice device) {
        this.device = device;
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        backend = new VhostUserBackend(pair[0], device, "test");
        frontEnd = new TestFrontEnd(pair[1]);
        thread = Thread.ofPlatform().daemon().name("vhost-user-backend-test").start(backend);
        memfd = Memfd.memfd_create("guest-ram", Memfd.MFD_CLOEXEC);
        Unistd.ftruncate(memfd, RAM_BYTES);
        ram = Mman.mmap(RAM_BYTES, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, memfd, 0, arena);
    }

    BackendHarness() {
        this(new FakeVhostUserDevice());
    }

    /**
     * A harness whose front-end talks to a back-end in another process ({@link MalformedMessageReplay}): {@code
     * frontEndFd} is a connected vhost-user socket (taken). {@link #backend} is then a reference back-end over {@code
     * device} that never runs ({@link #thread} is null): messages built from its offer match the remote back-end when
     * {@code device} offers what the remote one does. {@link #close()} checks nothing about the remote side.
     */
    BackendHarness(FakeVhostUserDevice device, int frontEndFd) {
        this.device = device;
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        // the reference back-end only answers offeredFeatures(); nothing is ever sent to it
        Unistd.close(pair[1]);
        backend = new VhostUserBackend(pair[0], device, "reference");
        frontEnd = new TestFrontEnd(frontEndFd);
        thread = null;
        memfd = Memfd.memfd_create("guest-ram", Memfd.MFD_CLOEXEC);
        Unistd.ftruncate(memfd, RAM_BYTES);
        ram = Mman.mmap(RAM_BYTES, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, memfd, 0, arena);
    }

    /** The whole RAM as one region (mmap offset 0). */
    static VhostUserMemoryRegion ramRegion() {
        return new VhostUserMemoryRegion(0, RAM_BYTES, RAM_UVA, 0);
    }

    /** Guest physical address of queue {@code q}'s descriptor table; avail at +0x1000, used at +0x2000. */
    static long ringGpa(int q) {
        return 0x10000L * (q + 1);
    }

    static VhostUserVringAddr ringAddr(int q) {
        long uva = RAM_UVA + ringGpa(q);
        return new VhostUserVringAddr(q, 0, uva, uva + 0x2000, uva + 0x1000, 0);
    }

    /** Writes used->idx of queue {@code q} in guest memory (little endian). */
    void usedIdx(int q, int idx) {
        ram.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), ringGpa(q) + 0x2000 + 2, (short)
                idx);
    }

    int eventfd() {
        int fd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        testFds.add(fd);
        return fd;
    }

    /** QEMU 7.2's handshake up to SET_OWNER (protocol features: all offered). Returns the negotiated set. */
    long handshake() {
        TestFrontEnd fe = frontEnd;
        long features = fe.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
        assertEquals(backend.offeredFeatures(), features);
        long protocol = fe.getU64(VhostUserRequest.VHOST_USER_GET_PROTOCOL_FEATURES);
        fe.send(VhostUserRequest.VHOST_USER_SET_PROTOCOL_FEATURES, false, new VhostUserU64(protocol));
        assertEquals(device.maxQueues(), fe.getU64(VhostUserRequest.VHOST_USER_GET_QUEUE_NUM));
        assertEquals(device.maxMemSlots(), fe.getU64(VhostUserRequest.VHOST_USER_GET_MAX_MEM_SLOTS));
        fe.send(VhostUserRequest.VHOST_USER_SET_OWNER, false, null);
        return protocol;
    }

    /** The rest of the boot: call/err fds, SET_FEATURES, memory, rings, enable. Returns the negotiated features. */
    long startRings(boolean memTable, int base) {
        TestFrontEnd fe = frontEnd;
        long features = fe.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
        int queues = device.maxQueues();
        for (int q = 0; q < queues; q++) {
            fe.send(VhostUserRequest.VHOST_USER_SET_VRING_CALL, false, new VhostUserVringFd(q, false), eventfd());
            fe.send(VhostUserRequest.VHOST_USER_SET_VRING_ERR, false, new VhostUserVringFd(q, false), eventfd());
        }
        assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(features)));
        if (memTable) {
            assertEquals(
                    0,
                    fe.ack(VhostUserRequest.VHOST_USER_SET_MEM_TABLE, VhostUserMemory.of(List.of(ramRegion())), memfd));
        } else {
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_ADD_MEM_REG, VhostUserMemRegMsg.of(ramRegion()), memfd));
        }
        for (int q = 0; q < queues; q++) {
            usedIdx(q, base);
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_NUM, new VhostUserVringState(q, QUEUE_SIZE)));
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_BASE, new VhostUserVringState(q, base)));
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_ADDR, ringAddr(q)));
            assertEquals(
                    0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_KICK, new VhostUserVringFd(q, false), eventfd()));
        }
        assertTrue(device.running().isEmpty(), "rings start disabled with VHOST_USER_F_PROTOCOL_FEATURES");
        for (int q = 0; q < queues; q++) {
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_ENABLE, new VhostUserVringState(q, 1)));
        }
        return features;
    }

    /**
     * Is every copy of {@code fd}'s socket closed except the test's {@code otherEnd}? Sends nothing; waits (bounded) for
     * the peer's hang-up.
     */
    static boolean peerClosed(int otherEnd) {
        int revents = Poll.poll(otherEnd, (short) (Poll.POLLIN | Poll.POLLHUP), 5000);
        return (revents & Poll.POLLHUP) != 0;
    }

    /** Waits (bounded) until the back-end thread has finished {@code run()}, cleanup included. */
    void awaitBackendEnd() {
        try {
            thread.join(TimeUnit.SECONDS.toMillis(5));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
        assertFalse(thread.isAlive(), "back-end thread ended after EOF");
    }

    /** Closes the front-end, waits for the back-end thread to finish, checks it let go of every fd. */
    @Override
    public void close() {
        frontEnd.close();
        if (thread == null) {
            backend.close();
            closeTestFds();
            return;
        }
        awaitBackendEnd();
        assertTrue(device.disconnectedLatch().getCount() == 0, "device.disconnected called");
        assertEquals(java.util.Map.of(), device.heldFds(), "every fd the back-end held was released");
        closeTestFds();
    }

    private void closeTestFds() {
        for (int fd : testFds) {
            Unistd.close(fd);
        }
        Unistd.close(memfd);
        arena.close();
    }
}
