package io.vhostd.vhost.backend;

import static io.vhostd.vhost.backend.BackendHarness.QUEUE_SIZE;
import static io.vhostd.vhost.backend.BackendHarness.RAM_BYTES;
import static io.vhostd.vhost.backend.BackendHarness.ramRegion;
import static io.vhostd.vhost.backend.BackendHarness.ringAddr;
import static io.vhostd.vhost.backend.BackendHarness.ringGpa;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.proto.VhostUserFeature;
import io.vhostd.vhost.proto.VhostUserProtocolException;
import io.vhostd.vhost.proto.VhostUserRequest;
import io.vhostd.vhost.proto.VhostUserVringState;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Issue #4: a back-end built in a restored state (no message exchange) serves the connection as if it had been. */
@Timeout(value = 20, unit = TimeUnit.SECONDS)
class VhostUserBackendRestoreTest {

    private static final long FEATURES =
            FakeVhostUserDevice.FEATURES | VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_MASK;

    private final Arena arena = Arena.ofShared();
    private final List<Integer> testFds = new ArrayList<>();
    private int memfd;
    private MemorySegment ram;
    private int[] pair;

    @BeforeEach
    void setUp() {
        memfd = Memfd.memfd_create("guest-ram", Memfd.MFD_CLOEXEC);
        Unistd.ftruncate(memfd, RAM_BYTES);
        ram = Mman.mmap(RAM_BYTES, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, memfd, 0, arena);
        pair = Socket.socketpair(Socket.SOCK_STREAM);
    }

    @AfterEach
    void tearDown() {
        testFds.forEach(Unistd::close);
        Unistd.close(memfd);
        arena.close();
    }

    private int eventfd() {
        int fd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        testFds.add(fd);
        return fd;
    }

    private VhostUserBackend.RestoredSession session(long features, int callFd) {
        // used->idx of queue 0 as the guest sees it
        ram.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), ringGpa(0) + 0x2000 + 2, (short)
                5);
        return new VhostUserBackend.RestoredSession(
                features,
                VhostUserBackend.SUPPORTED_PROTOCOL_FEATURES,
                List.of(new VhostUserBackend.RestoredRegion(ramRegion(), 42, Unistd.dup(memfd))),
                List.of(new VhostUserBackend.RestoredVring(
                        0, QUEUE_SIZE, ringAddr(0), 9, true, Unistd.dup(eventfd()), Unistd.dup(callFd), -1)));
    }

    @Test
    void shouldStartQueuesAtRestoredIndexesWhenSessionRestored() {
        FakeVhostUserDevice device = new FakeVhostUserDevice();
        int call = eventfd();
        VhostUserBackend backend = VhostUserBackend.restore(pair[0], device, "restored", session(FEATURES, call));
        Thread thread = Thread.ofPlatform().daemon().start(backend);
        try (TestFrontEnd frontEnd = new TestFrontEnd(pair[1])) {
            assertEquals(FEATURES, device.negotiated());
            assertEquals(42, device.memory().region(0).regionId(), "the region keeps its VirtNvme id");
            FakeVhostUserDevice.Started started = device.running().get(0);
            assertEquals(9, started.lastAvailIdx(), "vring base from the journal");
            assertEquals(5, started.usedIdx(), "used idx from the used ring");
            assertEquals(ringGpa(0), started.vq().descGpa());
            assertEquals(1, Eventfd.eventfd_read(call), "the call eventfd was written once");

            // the connection goes on as if the messages had been exchanged
            frontEnd.send(VhostUserRequest.VHOST_USER_GET_VRING_BASE, false, new VhostUserVringState(0, 0));
            byte[] reply = frontEnd.reply(VhostUserRequest.VHOST_USER_GET_VRING_BASE);
            assertEquals(9, MemorySegment.ofArray(reply).get(ValueLayout.JAVA_INT_UNALIGNED, 4));
            assertEquals(0, backend.protocolErrors());
        }
        try {
            thread.join(5_000);
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
        assertEquals(0, device.disconnectedLatch().getCount(), "ended like any session");
        assertEquals(java.util.Map.of(), device.heldFds(), "every fd released");
    }

    @Test
    void shouldRefuseRestoredSessionWhenFeaturesWereNotOffered() {
        FakeVhostUserDevice device = new FakeVhostUserDevice();
        long notOffered = FEATURES | (1L << 50);
        assertThrows(
                VhostUserProtocolException.class,
                () -> VhostUserBackend.restore(pair[0], device, "restored", session(notOffered, eventfd())));
        assertEquals(0, device.disconnectedLatch().getCount());
        assertEquals(java.util.Map.of(), device.heldFds(), "every fd released");
        assertTrue(BackendHarness.peerClosed(pair[1]), "the back-end closed its connection");
        Unistd.close(pair[1]);
    }
}
