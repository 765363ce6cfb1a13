package io.vhostd.vhost.backend;

import static io.vhostd.vhost.backend.BackendHarness.QUEUE_SIZE;
import static io.vhostd.vhost.backend.BackendHarness.RAM_BYTES;
import static io.vhostd.vhost.backend.BackendHarness.RAM_UVA;
import static io.vhostd.vhost.backend.BackendHarness.ringAddr;
import static io.vhostd.vhost.backend.BackendHarness.ringGpa;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.proto.VhostUserConfig;
import io.vhostd.vhost.proto.VhostUserFeature;
import io.vhostd.vhost.proto.VhostUserMemRegMsg;
import io.vhostd.vhost.proto.VhostUserMemory;
import io.vhostd.vhost.proto.VhostUserMemoryRegion;
import io.vhostd.vhost.proto.VhostUserProtocolFeature;
import io.vhostd.vhost.proto.VhostUserRequest;
import io.vhostd.vhost.proto.VhostUserU64;
import io.vhostd.vhost.proto.VhostUserVringState;
import io.vhostd.vhost.virtio.GuestMemoryRegion;
import io.vhostd.vhost.virtio.PackedRingDescriptor;
import io.vhostd.vhost.virtio.PackedVirtqueue;
import io.vhostd.vhost.virtio.VirtioBlk;
import io.vhostd.vhost.virtio.Virtqueue;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Good paths over a real socketpair: the QEMU 7.2 boot, stop and restart, REPLY_ACK, memory table changes. */
@Timeout(value = 20, unit = TimeUnit.SECONDS)
class VhostUserBackendTest {

    @Test
    void shouldOfferMaskedFeaturesWhenFrontEndAsks() {
        try (BackendHarness h = new BackendHarness()) {
            long features = h.frontEnd.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
            assertEquals(FakeVhostUserDevice.FEATURES | VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_MASK, features);
            long protocol = h.frontEnd.getU64(VhostUserRequest.VHOST_USER_GET_PROTOCOL_FEATURES);
            assertEquals(VhostUserBackend.SUPPORTED_PROTOCOL_FEATURES, protocol, "LOG_SHMFD masked");
        }
    }

    @Test
    void shouldRemoveUnsupportedVirtioFeaturesWhenDeviceOffersThem() {
        long offer = FakeVhostUserDevice.FEATURES
                | VhostUserFeature.VHOST_F_LOG_ALL_MASK
                | VirtioBlk.VIRTIO_F_RING_PACKED_MASK
                | VirtioBlk.VIRTIO_F_ACCESS_PLATFORM_MASK;
        FakeVhostUserDevice device = new FakeVhostUserDevice(offer, FakeVhostUserDevice.PROTOCOL_FEATURES, 1, 8);
        try (BackendHarness h = new BackendHarness(device)) {
            assertEquals(
                    FakeVhostUserDevice.FEATURES
                            | VirtioBlk.VIRTIO_F_RING_PACKED_MASK
                            | VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_MASK,
                    h.frontEnd.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES),
                    "LOG_ALL and ACCESS_PLATFORM removed, RING_PACKED kept");
        }
    }

    @Test
    void shouldStartQueuesWithRingAddressesWhenQemuBootSequenceCompletes() {
        try (BackendHarness h = new BackendHarness()) {
            int[] backendChannel = Socket.socketpair(Socket.SOCK_STREAM);
            h.testFds.add(backendChannel[1]);
            h.handshake();
            // QEMU 7.2 sends SET_BACKEND_REQ_FD before SET_OWNER; here after, with REPLY_ACK
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_BACKEND_REQ_FD, null, backendChannel[0]));
            Unistd.close(backendChannel[0]);
            long features = h.startRings(false, 7);

            assertEquals(features, h.device.negotiated());
            assertEquals(2, h.device.running().size());
            for (int q = 0; q < 2; q++) {
                FakeVhostUserDevice.Started s = h.device.running().get(q);
                assertEquals(ringGpa(q), s.vq().descGpa());
                assertEquals(ringGpa(q) + 0x1000, s.split().availGpa());
                assertEquals(ringGpa(q) + 0x2000, s.split().usedRingGpa());
                assertEquals(QUEUE_SIZE, s.vq().size());
                assertEquals(7, s.lastAvailIdx(), "SET_VRING_BASE");
                assertEquals(7, s.usedIdx(), "used idx read from the used ring");
                assertTrue(s.vq().eventIdx());
                assertTrue(s.vq().indirectDesc());
                assertTrue(s.kickFd() >= 0 && s.callFd() >= 0 && s.errFd() >= 0);
                assertEquals("kick", h.device.heldFds().get(s.kickFd()));
                assertEquals("call", h.device.heldFds().get(s.callFd()));
                assertEquals("err", h.device.heldFds().get(s.errFd()));
            }
            // each call eventfd was signalled once at start; testFds: back-end channel, call 0, err 0, call 1, ...
            assertEquals(1, Eventfd.eventfd_read(h.testFds.get(1)));
            assertEquals(1, Eventfd.eventfd_read(h.testFds.get(3)));
            assertTrue(h.device.heldFds().containsValue("backend_req"));

            // the region as mapped: memory table seen by the device, backed by the memfd
            GuestMemoryRegion region = h.device.memory().region(0);
            assertEquals(0, region.guestPhysAddr());
            assertEquals(RAM_BYTES, region.sizeBytes());
            assertEquals(RAM_UVA, region.userAddr());
            h.ram.set(ValueLayout.JAVA_LONG_UNALIGNED, 0x800, 0x1122_3344_5566_7788L);
            assertEquals(0x1122_3344_5566_7788L, region.mapping().get(ValueLayout.JAVA_LONG_UNALIGNED, 0x800));

            byte[] reply = getConfig(h.frontEnd, 0, FakeVhostUserDevice.CONFIG_BYTES);
            byte[] config = h.device.config();
            assertArrayEquals(config, Arrays.copyOfRange(reply, 12, reply.length));
            byte[] window = getConfig(h.frontEnd, 20, 8);
            assertArrayEquals(Arrays.copyOfRange(config, 20, 28), Arrays.copyOfRange(window, 12, 20));
            assertEquals(0, h.backend.protocolErrors());
        }
    }

    @Test
    void shouldStopQueueAndReturnNextAvailIdxWhenGetVringBase() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            h.startRings(false, 0xfffe);
            h.device.stopAdvance(5);
            // QEMU 7.2 vhost_dev_stop: SET_VRING_ENABLE 0, then GET_VRING_BASE
            assertEquals(
                    0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_ENABLE, new VhostUserVringState(1, 0)));
            assertFalse(h.device.running().containsKey(1));
            for (int q = 0; q < 2; q++) {
                h.frontEnd.send(VhostUserRequest.VHOST_USER_GET_VRING_BASE, false, new VhostUserVringState(q, 0));
                byte[] reply = h.frontEnd.reply(VhostUserRequest.VHOST_USER_GET_VRING_BASE);
                MemorySegment s = MemorySegment.ofArray(reply);
                assertEquals(8, reply.length);
                assertEquals(q, s.get(ValueLayout.JAVA_INT_UNALIGNED, 0));
                // 0xfffe + 5 wraps to 3
                assertEquals(3, s.get(ValueLayout.JAVA_INT_UNALIGNED, 4), "queue " + q);
            }
            assertTrue(h.device.running().isEmpty());
            assertEquals(2, h.device.count("stopQueue 1") + h.device.count("stopQueue 0"));

            // restart as QEMU does: NUM, BASE (the value it got), ADDR, KICK, ENABLE
            h.device.stopAdvance(0);
            h.usedIdx(0, 3);
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_NUM, new VhostUserVringState(0, 256)));
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_BASE, new VhostUserVringState(0, 3)));
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_ADDR, ringAddr(0)));
            assertEquals(
                    0,
                    h.frontEnd.ack(
                            VhostUserRequest.VHOST_USER_SET_VRING_KICK,
                            new io.vhostd.vhost.proto.VhostUserVringFd(0, false),
                            h.eventfd()));
            assertTrue(h.device.running().containsKey(0), "still enabled from before: starts on KICK");
            FakeVhostUserDevice.Started s = h.device.running().get(0);
            assertEquals(256, s.vq().size());
            assertEquals(3, s.lastAvailIdx());
            assertEquals(3, s.usedIdx());
        }
    }

    @Test
    void shouldMapWithMmapOffsetWhenSetMemTableIsUsed() {
        // no CONFIGURE_MEM_SLOTS: QEMU falls back to SET_MEM_TABLE
        long protocol = VhostUserBackend.SUPPORTED_PROTOCOL_FEATURES
                & ~VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_MASK;
        FakeVhostUserDevice device = new FakeVhostUserDevice(FakeVhostUserDevice.FEATURES, protocol, 1, 8);
        try (BackendHarness h = new BackendHarness(device)) {
            TestFrontEnd fe = h.frontEnd;
            fe.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
            long offered = fe.getU64(VhostUserRequest.VHOST_USER_GET_PROTOCOL_FEATURES);
            fe.send(VhostUserRequest.VHOST_USER_SET_PROTOCOL_FEATURES, false, new VhostUserU64(offered));
            fe.send(VhostUserRequest.VHOST_USER_SET_OWNER, false, null);
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(fe.sync())));
            // two regions of the same memfd: [0, 64 KiB) at gpa 0 and [64 KiB, 1 MiB) at gpa 4 GiB
            VhostUserMemoryRegion low = new VhostUserMemoryRegion(0, 0x10000, RAM_UVA, 0);
            VhostUserMemoryRegion high =
                    new VhostUserMemoryRegion(0x1_0000_0000L, RAM_BYTES - 0x10000, RAM_UVA + 0x10000, 0x10000);
            assertEquals(
                    0,
                    fe.ack(
                            VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                            VhostUserMemory.of(List.of(low, high)),
                            h.memfd,
                            h.memfd));
            assertEquals(2, h.device.memory().regionCount());
            GuestMemoryRegion mappedHigh = h.device.memory().region(1);
            assertEquals(0x10000, mappedHigh.mmapOffset());
            assertEquals(RAM_BYTES - 0x10000, mappedHigh.mapping().byteSize());
            h.ram.set(ValueLayout.JAVA_INT_UNALIGNED, 0x10000 + 0x44, 0xcafe);
            assertEquals(
                    0xcafe, mappedHigh.mapping().get(ValueLayout.JAVA_INT_UNALIGNED, 0x44), "slice at mmap_offset");
            assertEquals(0x1_0000_0044L, h.device.memory().uvaToGpa(RAM_UVA + 0x10044, 4));
            assertNotEquals(h.device.memory().region(0).regionId(), mappedHigh.regionId(), "process-unique region ids");

            // the same table again (QEMU re-sends it): nothing remapped, nothing removed
            long memoryChanges = h.device.count("memoryChanged");
            assertEquals(
                    0,
                    fe.ack(
                            VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                            VhostUserMemory.of(List.of(low, high)),
                            h.memfd,
                            h.memfd));
            assertEquals(memoryChanges, h.device.count("memoryChanged"));

            // a new table without the low region: it is removed (and unmapped) after memoryChanged returned
            assertEquals(
                    0, fe.ack(VhostUserRequest.VHOST_USER_SET_MEM_TABLE, VhostUserMemory.of(List.of(high)), h.memfd));
            assertEquals(1, h.device.memory().regionCount());
            assertEquals(1, h.device.lastRemoved().size());
            assertEquals(0, h.device.lastRemoved().get(0).guestPhysAddr());
            assertFalse(h.device.lastRemoved().get(0).mapping().scope().isAlive(), "removed region unmapped");
        }
    }

    @Test
    void shouldRestartRunningQueuesWithSavedIndexWhenMemoryChanges() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            h.startRings(false, 10);
            h.device.stopAdvance(4);
            h.usedIdx(0, 14);
            h.usedIdx(1, 14);
            // hot-add a second region (a new memfd) while both queues run
            int memfd2 = Memfd.memfd_create("guest-ram-2", Memfd.MFD_CLOEXEC);
            h.testFds.add(memfd2);
            Unistd.ftruncate(memfd2, 0x20000);
            VhostUserMemoryRegion added = new VhostUserMemoryRegion(0x1_0000_0000L, 0x20000, RAM_UVA + RAM_BYTES, 0);
            assertEquals(
                    0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_ADD_MEM_REG, VhostUserMemRegMsg.of(added), memfd2));
            assertEquals(2, h.device.memory().regionCount());
            assertEquals(1, h.device.lastAdded().size());
            assertEquals(2, h.device.running().size(), "restarted");
            for (FakeVhostUserDevice.Started s : h.device.running().values()) {
                assertEquals(14, s.lastAvailIdx(), "index saved by stopQueue");
                assertEquals(14, s.usedIdx());
                assertEquals(h.device.memory(), s.vq().memory(), "rebuilt on the new memory");
            }
            List<String> calls = h.device.calls();
            int changed = calls.lastIndexOf("memoryChanged");
            assertTrue(calls.subList(0, changed).containsAll(List.of("stopQueue 0", "stopQueue 1")));
            assertTrue(calls.subList(changed, calls.size()).containsAll(List.of("startQueue 0", "startQueue 1")));

            // remove it again: the fd (sent along, tolerated) is closed, the region unmapped
            int[] probe = Socket.socketpair(Socket.SOCK_STREAM);
            assertEquals(
                    0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_REM_MEM_REG, VhostUserMemRegMsg.of(added), probe[0]));
            Unistd.close(probe[0]);
            assertTrue(BackendHarness.peerClosed(probe[1]), "REM_MEM_REG's fd closed");
            Unistd.close(probe[1]);
            assertEquals(1, h.device.memory().regionCount());
            assertFalse(h.device.lastRemoved().get(0).mapping().scope().isAlive());
            assertEquals(2, h.device.running().size());
        }
    }

    @Test
    void shouldKeepOldMemoryWhenDeviceRefusesTheNewTable() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            h.startRings(false, 0);
            h.device.refuseMemory(true);
            int memfd2 = Memfd.memfd_create("guest-ram-2", Memfd.MFD_CLOEXEC);
            h.testFds.add(memfd2);
            Unistd.ftruncate(memfd2, 0x20000);
            VhostUserMemoryRegion added = new VhostUserMemoryRegion(0x1_0000_0000L, 0x20000, RAM_UVA + RAM_BYTES, 0);
            assertEquals(
                    1, h.frontEnd.ack(VhostUserRequest.VHOST_USER_ADD_MEM_REG, VhostUserMemRegMsg.of(added), memfd2));
            assertEquals(1, h.device.memory().regionCount());
            assertEquals(2, h.device.running().size(), "queues restarted on the old memory");
            assertEquals(
                    1,
                    h.device.heldFds().values().stream().filter("mem"::equals).count());
        }
    }

    @Test
    void shouldAckWithZeroOrOneWhenNeedReplyIsSet() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            TestFrontEnd fe = h.frontEnd;
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_NUM, new VhostUserVringState(0, 64)));
            assertEquals(1, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_NUM, new VhostUserVringState(0, 63)));
            // without NEED_REPLY: no reply, success or not; the next reply is GET_FEATURES'
            fe.send(VhostUserRequest.VHOST_USER_SET_VRING_NUM, false, new VhostUserVringState(0, 63));
            fe.send(VhostUserRequest.VHOST_USER_SET_VRING_NUM, false, new VhostUserVringState(0, 32));
            assertEquals(h.backend.offeredFeatures(), fe.sync());
            // a GET_* with NEED_REPLY gets its own reply only
            fe.send(VhostUserRequest.VHOST_USER_GET_QUEUE_NUM, true, null);
            assertEquals(2, fe.replyU64(VhostUserRequest.VHOST_USER_GET_QUEUE_NUM.id()));
            assertEquals(h.backend.offeredFeatures(), fe.sync());
            assertEquals(2, h.backend.protocolErrors());
        }
    }

    @Test
    void shouldEnableAllRingsWhenProtocolFeaturesNotNegotiated() {
        try (BackendHarness h = new BackendHarness()) {
            TestFrontEnd fe = h.frontEnd;
            long features = fe.sync();
            // a front-end without protocol features: no REPLY_ACK, so sync with GET_FEATURES
            fe.send(VhostUserRequest.VHOST_USER_SET_OWNER, false, null);
            fe.send(
                    VhostUserRequest.VHOST_USER_SET_FEATURES,
                    false,
                    new VhostUserU64(features & ~VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_MASK));
            fe.send(
                    VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                    false,
                    VhostUserMemory.of(List.of(BackendHarness.ramRegion())),
                    h.memfd);
            fe.send(VhostUserRequest.VHOST_USER_SET_VRING_NUM, false, new VhostUserVringState(0, QUEUE_SIZE));
            fe.send(VhostUserRequest.VHOST_USER_SET_VRING_ADDR, false, ringAddr(0));
            fe.send(
                    VhostUserRequest.VHOST_USER_SET_VRING_KICK,
                    false,
                    new io.vhostd.vhost.proto.VhostUserVringFd(0, true));
            fe.sync();
            assertTrue(h.device.running().containsKey(0), "enabled without SET_VRING_ENABLE, polling (no kick fd)");
            assertEquals(-1, h.device.running().get(0).kickFd());
            assertEquals(-1, h.device.running().get(0).callFd());
            assertTrue(h.device.running().get(0).vq().eventIdx());
            assertEquals(0, h.backend.protocolErrors());
        }
    }

    @Test
    void shouldRebuildRingsWhenFeaturesChangeWhileRunning() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            long features = h.startRings(false, 0);
            long withoutEventIdx = features & ~VirtioBlk.VIRTIO_RING_F_EVENT_IDX_MASK;
            assertEquals(
                    0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(withoutEventIdx)));
            assertEquals(2, h.device.running().size());
            assertFalse(h.device.running().get(0).vq().eventIdx());
            assertEquals(4, h.device.starts().size());
        }
    }

    @Test
    void shouldReplaceCallFdWhenSetVringCallArrivesWhileRunning() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            h.startRings(false, 0);
            int oldCall = h.device.running().get(0).callFd();
            int newCall = h.eventfd();
            assertEquals(
                    0,
                    h.frontEnd.ack(
                            VhostUserRequest.VHOST_USER_SET_VRING_CALL,
                            new io.vhostd.vhost.proto.VhostUserVringFd(0, false),
                            newCall));
            FakeVhostUserDevice.Started s = h.device.running().get(0);
            assertNotEquals(oldCall, s.callFd());
            assertEquals(
                    2,
                    h.device.heldFds().values().stream().filter("call"::equals).count(),
                    "old call fd released");
            assertEquals(1, Eventfd.eventfd_read(newCall), "signalled once on restart");
        }
    }

    @Test
    void shouldResetRingsAndFeaturesWhenResetDevice() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            h.startRings(false, 0);
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_RESET_DEVICE, null));
            assertTrue(h.device.running().isEmpty());
            assertFalse(h.device.heldFds().containsValue("kick"));
            assertFalse(h.device.heldFds().containsValue("call"));
            // the owner stays: ring messages are still accepted
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_NUM, new VhostUserVringState(0, 64)));
        }
    }

    @Test
    void shouldFailTheMessageAndKeepServingWhenDeviceFailsToStartAQueue() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            h.device.failStart(true);
            long features = h.frontEnd.sync();
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(features)));
            assertEquals(
                    0,
                    h.frontEnd.ack(
                            VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                            VhostUserMemRegMsg.of(BackendHarness.ramRegion()),
                            h.memfd));
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_NUM, new VhostUserVringState(0, 64)));
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_ADDR, ringAddr(0)));
            assertEquals(
                    0,
                    h.frontEnd.ack(
                            VhostUserRequest.VHOST_USER_SET_VRING_KICK,
                            new io.vhostd.vhost.proto.VhostUserVringFd(0, true)));
            assertEquals(
                    1, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_ENABLE, new VhostUserVringState(0, 1)));
            assertTrue(h.device.running().isEmpty());
            // the front-end tries again once the device can
            h.device.failStart(false);
            assertEquals(
                    0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_ENABLE, new VhostUserVringState(0, 1)));
            assertTrue(h.device.running().containsKey(0));
            assertEquals(features, h.frontEnd.sync());
        }
    }

    @Test
    void shouldReturnTheBaseWhenGetVringBaseOnARingThatNeverRan() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            assertEquals(
                    0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_BASE, new VhostUserVringState(1, 0x1234)));
            h.frontEnd.send(VhostUserRequest.VHOST_USER_GET_VRING_BASE, false, new VhostUserVringState(1, 0));
            MemorySegment reply = MemorySegment.ofArray(h.frontEnd.reply(VhostUserRequest.VHOST_USER_GET_VRING_BASE));
            assertEquals(1, reply.get(ValueLayout.JAVA_INT_UNALIGNED, 0));
            assertEquals(0x1234, reply.get(ValueLayout.JAVA_INT_UNALIGNED, 4));
            assertEquals(0, h.device.count("stopQueue 1"));
        }
    }

    @Test
    void shouldStoreStatusWhenSetStatus() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_STATUS, new VhostUserU64(0x0f)));
            assertEquals(0x0f, h.frontEnd.getU64(VhostUserRequest.VHOST_USER_GET_STATUS));
        }
    }

    @Test
    void shouldEndRunAndDisconnectWhenFrontEndCloses() {
        BackendHarness h = new BackendHarness();
        h.handshake();
        h.startRings(false, 0);
        h.frontEnd.shutdownWrite();
        h.awaitBackendEnd();
        List<String> calls = h.device.calls();
        int disconnected = calls.indexOf("disconnected");
        assertTrue(calls.subList(0, disconnected).containsAll(List.of("stopQueue 0", "stopQueue 1")));
        assertTrue(
                calls.indexOf("fdReleased mem " + h.device.memory().region(0).regionId()) > disconnected,
                "memory released after disconnected");
        h.close();
    }

    private static FakeVhostUserDevice packedDevice() {
        return new FakeVhostUserDevice(
                FakeVhostUserDevice.FEATURES | VirtioBlk.VIRTIO_F_RING_PACKED_MASK,
                FakeVhostUserDevice.PROTOCOL_FEATURES,
                2,
                8);
    }

    @Test
    void shouldStartPackedRingsAtBothHalvesOfTheBaseWhenRingPackedNegotiated() {
        try (BackendHarness h = new BackendHarness(packedDevice())) {
            h.handshake();
            // avail offset 5 with wrap counter 1, used offset 3 with wrap counter 0 (vhost-user.rst, packed rings)
            int base = 5 | 1 << 15 | 3 << 16;
            long features = h.startRings(false, base);

            assertTrue((features & VirtioBlk.VIRTIO_F_RING_PACKED_MASK) != 0);
            for (int q = 0; q < 2; q++) {
                FakeVhostUserDevice.Started s = h.device.running().get(q);
                PackedVirtqueue vq = (PackedVirtqueue) s.vq();
                assertTrue(vq.packed());
                assertEquals(QUEUE_SIZE, vq.size());
                assertEquals(ringGpa(q), vq.descGpa());
                assertEquals(ringGpa(q) + 0x1000, vq.driverEventGpa(), "avail address = Driver Area");
                assertEquals(ringGpa(q) + 0x2000, vq.deviceEventGpa(), "used address = Device Area");
                assertEquals(5 | 1 << 15, vq.lastAvailIdx());
                assertEquals(3, vq.usedIdx());
            }
            h.frontEnd.send(VhostUserRequest.VHOST_USER_GET_VRING_BASE, false, new VhostUserVringState(1, 0));
            MemorySegment reply = MemorySegment.ofArray(h.frontEnd.reply(VhostUserRequest.VHOST_USER_GET_VRING_BASE));
            assertEquals(base, reply.get(ValueLayout.JAVA_INT_UNALIGNED, 4), "both halves come back");
            assertEquals(0, h.backend.protocolErrors());
        }
    }

    @Test
    void shouldStartPackedRingWithWrapCountersSetWhenFrontEndSentNoBase() {
        try (BackendHarness h = new BackendHarness(packedDevice())) {
            h.handshake();
            TestFrontEnd fe = h.frontEnd;
            long features = fe.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(features)));
            assertEquals(
                    0,
                    fe.ack(
                            VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                            VhostUserMemRegMsg.of(BackendHarness.ramRegion()),
                            h.memfd));
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_NUM, new VhostUserVringState(0, 100)));
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_ADDR, ringAddr(0)));
            assertEquals(
                    0,
                    fe.ack(
                            VhostUserRequest.VHOST_USER_SET_VRING_KICK,
                            new io.vhostd.vhost.proto.VhostUserVringFd(0, false),
                            h.eventfd()));
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_ENABLE, new VhostUserVringState(0, 1)));

            Virtqueue vq = h.device.running().get(0).vq();
            assertEquals(100, vq.size(), "packed rings need not be a power of two");
            assertEquals(PackedRingDescriptor.VRING_BASE_INITIAL, vq.vringBase());
        }
    }

    @Test
    void shouldFailStartWhenPackedBaseOffsetIsBeyondTheRing() {
        try (BackendHarness h = new BackendHarness(packedDevice())) {
            h.handshake();
            TestFrontEnd fe = h.frontEnd;
            long features = fe.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(features)));
            assertEquals(
                    0,
                    fe.ack(
                            VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                            VhostUserMemRegMsg.of(BackendHarness.ramRegion()),
                            h.memfd));
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_NUM, new VhostUserVringState(0, 64)));
            // used offset 64 of a 64-entry ring: accepted as a message, refused when the ring starts
            assertEquals(
                    0,
                    fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_BASE, new VhostUserVringState(0, 1 << 15 | 64 << 16)));
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_ADDR, ringAddr(0)));
            assertEquals(
                    0,
                    fe.ack(
                            VhostUserRequest.VHOST_USER_SET_VRING_KICK,
                            new io.vhostd.vhost.proto.VhostUserVringFd(0, false),
                            h.eventfd()));

            assertEquals(1, fe.ack(VhostUserRequest.VHOST_USER_SET_VRING_ENABLE, new VhostUserVringState(0, 1)));
            assertTrue(h.device.running().isEmpty());
        }
    }

    @Test
    void shouldRefuseSplitQueueSizeNotPowerOfTwoWhenRingPackedNotNegotiated() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            long features = h.frontEnd.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(features)));

            assertEquals(1, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_VRING_NUM, new VhostUserVringState(0, 100)));
        }
    }

    @Test
    void shouldLetDeviceDecideWhenSetConfig() {
        try (BackendHarness h = new BackendHarness()) {
            h.handshake();
            int writable = FakeVhostUserDevice.WRITABLE_CONFIG_OFFSET;
            // QEMU 7.2 vhost_user_blk_set_config: offset of writeback, 1 byte, VHOST_SET_CONFIG_TYPE_FRONTEND
            assertEquals(
                    0,
                    h.frontEnd.ack(
                            VhostUserRequest.VHOST_USER_SET_CONFIG,
                            new VhostUserConfig(writable, 1, 0, new byte[] {0})));
            assertEquals(0, getConfig(h.frontEnd, writable, 1)[12]);
            assertEquals(
                    1,
                    h.frontEnd.ack(
                            VhostUserRequest.VHOST_USER_SET_CONFIG,
                            new VhostUserConfig(writable - 1, 2, 0, new byte[] {0, 1})),
                    "a read-only byte in the window");
            assertEquals(
                    1,
                    h.frontEnd.ack(
                            VhostUserRequest.VHOST_USER_SET_CONFIG,
                            new VhostUserConfig(FakeVhostUserDevice.CONFIG_BYTES, 1, 0, new byte[] {0})),
                    "outside the config space: the device is not asked");
            assertEquals(2, h.device.count("setConfig " + writable + " 1") + h.device.count("setConfig 31 2"));
        }
    }

    private static byte[] getConfig(TestFrontEnd fe, int offset, int size) {
        fe.send(VhostUserRequest.VHOST_USER_GET_CONFIG, false, new VhostUserConfig(offset, size, 0, new byte[size]));
        byte[] reply = fe.reply(VhostUserRequest.VHOST_USER_GET_CONFIG);
        VhostUserConfig config =
                VhostUserConfig.decode(VhostUserRequest.VHOST_USER_GET_CONFIG.id(), MemorySegment.ofArray(reply));
        assertEquals(offset, config.offset());
        assertEquals(size, config.size());
        return reply;
    }
}
