package io.vhostd.vhost.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.journal.inflight.InflightChain;
import io.vhostd.journal.inflight.InflightDesc;
import io.vhostd.journal.inflight.InflightHead;
import io.vhostd.journal.inflight.InflightRegionDescriptor;
import io.vhostd.journal.inflight.InflightRegionPacked;
import io.vhostd.journal.inflight.InflightRegionSplit;
import io.vhostd.shm.linux.Stat;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.proto.VhostUserInflight;
import io.vhostd.vhost.proto.VhostUserProtocolFeature;
import io.vhostd.vhost.proto.VhostUserRequest;
import io.vhostd.vhost.proto.VhostUserU64;
import io.vhostd.vhost.virtio.PackedRingDescriptor;
import io.vhostd.vhost.virtio.VirtioBlk;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@code VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD} over a socketpair, the way QEMU's vhost-user-blk uses it: {@code
 * GET_INFLIGHT_FD} on the first start, the data path marks heads, the back-end "crashes" (the test, as QEMU, keeps the
 * fd), a new back-end gets {@code SET_INFLIGHT_FD} and resubmits the heads in flight once, in fetch order.
 */
@Timeout(value = 20, unit = TimeUnit.SECONDS)
class VhostUserBackendInflightTest {
    private static final int QUEUE_SIZE = BackendHarness.QUEUE_SIZE;

    private static FakeVhostUserDevice oneQueueDevice() {
        return new FakeVhostUserDevice(FakeVhostUserDevice.FEATURES, FakeVhostUserDevice.PROTOCOL_FEATURES, 1, 8);
    }

    /** The front-end's copy of the buffer, as QEMU keeps it across a back-end restart. */
    private record Buffer(int fd, VhostUserInflight description) {}

    /** Handshake, SET_FEATURES (QEMU's vhost_dev_prepare_inflight), GET_INFLIGHT_FD; the rings are not started. */
    private static Buffer getInflight(BackendHarness h) {
        long protocol = h.handshake();
        assertTrue((protocol & VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_MASK) != 0, "offered");
        long features = h.frontEnd.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
        assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(features)));
        h.frontEnd.send(VhostUserRequest.VHOST_USER_GET_INFLIGHT_FD, false, new VhostUserInflight(0, 0, 1, QUEUE_SIZE));
        var reply = h.frontEnd.replyWithFds(VhostUserRequest.VHOST_USER_GET_INFLIGHT_FD);
        assertEquals(1, reply.fds().length, "the buffer's fd");
        VhostUserInflight d =
                VhostUserInflight.decode(VhostUserRequest.VHOST_USER_GET_INFLIGHT_FD.id(), reply.payload());
        return new Buffer(reply.fds()[0], d);
    }

    /** Handshake, SET_FEATURES, SET_INFLIGHT_FD with the kept buffer (QEMU's reconnect). */
    private static void setInflight(BackendHarness h, Buffer b) {
        h.handshake();
        long features = h.frontEnd.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
        assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(features)));
        assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_INFLIGHT_FD, b.description(), b.fd()));
    }

    private static VringInflight started(BackendHarness h) {
        h.frontEnd.sync();
        FakeVhostUserDevice.Started s = h.device.running().get(0);
        assertNotNull(s, "queue 0 runs");
        assertNotNull(s.inflight(), "the device got the queue's inflight region");
        return s.inflight();
    }

    private static List<Integer> heads(List<InflightHead> list) {
        return list.stream().map(InflightHead::head).toList();
    }

    @Test
    void shouldAllocateZeroedSplitBufferOfTheSpecSizeWhenFrontEndAsks() {
        try (BackendHarness h = new BackendHarness(oneQueueDevice())) {
            Buffer b = getInflight(h);
            long expected = InflightRegionDescriptor.mmapSizeBytes(1, QUEUE_SIZE, false);
            assertEquals(2112, expected, "ALIGN_UP(16 * 128 + 2, 64), libvhost-user's size");
            assertEquals(expected, b.description().mmapSize());
            assertEquals(0, b.description().mmapOffset());
            assertEquals(1, b.description().numQueues());
            assertEquals(QUEUE_SIZE, b.description().queueSize());
            assertEquals(expected, Stat.fstat(b.fd()).sizeBytes());
            assertTrue(h.device.heldFds().containsValue("inflight"), "custody of the buffer's fd");
            h.startRings(true, 7);
            VringInflight vi = started(h);
            assertTrue(vi.recovery().fresh(), "a new buffer is initialised, not recovered");
            assertFalse(vi.reconnected());
            assertEquals(7, vi.recovery().usedIdx(), "used_idx starts at the ring's used->idx (SPDK #3766)");
            assertEquals(7, h.device.running().get(0).lastAvailIdx(), "SET_VRING_BASE kept");
            Unistd.close(b.fd());
        }
    }

    @Test
    void shouldResubmitInflightHeadsExactlyOnceInCounterOrderWhenBackEndRestarts() {
        Buffer b;
        try (BackendHarness h = new BackendHarness(oneQueueDevice())) {
            b = getInflight(h);
            h.startRings(true, 0);
            InflightRegionSplit region = started(h).split();
            // the data path: fetch 5, 9, 2, 11; 9 and 11 complete (out of order), published as one batch
            region.fetched(5);
            region.fetched(9);
            region.fetched(2);
            region.fetched(11);
            int[] batch = {11, 9};
            region.batchBegin(batch, 2);
            h.usedIdx(0, 2);
            region.batchEnd(batch, 2);
        }
        // "crash": the back-end is gone, the front-end still holds the buffer and reconnects to a new one
        try (BackendHarness h = new BackendHarness(oneQueueDevice())) {
            setInflight(h, b);
            // QEMU 7.2 restores last_avail_idx from used->idx after the failed GET_VRING_BASE
            h.startRings(true, 2);
            VringInflight vi = started(h);
            assertTrue(vi.reconnected());
            assertEquals(List.of(5, 2), heads(vi.resubmit()), "in flight, oldest fetch first");
            assertEquals(4, h.device.running().get(0).lastAvailIdx(), "used_idx + inflight count (libvhost-user)");
            int[] batch = {2, 5};
            vi.split().batchBegin(batch, 2);
            h.usedIdx(0, 4);
            vi.split().batchEnd(batch, 2);
        }
        // a third back-end: nothing is resubmitted twice
        try (BackendHarness h = new BackendHarness(oneQueueDevice())) {
            setInflight(h, b);
            h.startRings(true, 4);
            VringInflight vi = started(h);
            assertEquals(List.of(), vi.resubmit());
            assertEquals(4, h.device.running().get(0).lastAvailIdx());
        }
        Unistd.close(b.fd());
    }

    @Test
    void shouldNotResubmitTheTornLastBatchWhenBackEndDiedBetweenUsedIdxAndClear() {
        Buffer b;
        try (BackendHarness h = new BackendHarness(oneQueueDevice())) {
            b = getInflight(h);
            h.startRings(true, 0);
            InflightRegionSplit region = started(h).split();
            region.fetched(0);
            region.fetched(1);
            region.fetched(2);
            int[] batch = {0, 2};
            region.batchBegin(batch, 2);
            // used->idx moved: the guest saw the batch; the back-end died before batchEnd (used_idx != used->idx)
            h.usedIdx(0, 2);
        }
        try (BackendHarness h = new BackendHarness(oneQueueDevice())) {
            setInflight(h, b);
            h.startRings(true, 2);
            VringInflight vi = started(h);
            assertEquals(2, vi.recovery().clearedBatchSize(), "the whole torn batch, not only last_batch_head");
            assertEquals(List.of(1), heads(vi.resubmit()));
            assertEquals(3, h.device.running().get(0).lastAvailIdx());
        }
        Unistd.close(b.fd());
    }

    private static FakeVhostUserDevice packedDevice() {
        return new FakeVhostUserDevice(
                FakeVhostUserDevice.FEATURES | VirtioBlk.VIRTIO_F_RING_PACKED_MASK,
                FakeVhostUserDevice.PROTOCOL_FEATURES,
                1,
                8);
    }

    @Test
    void shouldResubmitPackedChainsAndTakeRingPositionsFromTheRegionWhenBackEndRestarts() {
        int avail = PackedRingDescriptor.VIRTQ_DESC_F_AVAIL;
        int next = PackedRingDescriptor.VIRTQ_DESC_F_NEXT;
        int write = PackedRingDescriptor.VIRTQ_DESC_F_WRITE;
        Buffer b;
        try (BackendHarness h = new BackendHarness(packedDevice())) {
            b = getInflight(h);
            assertEquals(
                    InflightRegionDescriptor.mmapSizeBytes(1, QUEUE_SIZE, true),
                    b.description().mmapSize());
            h.startRings(true, PackedRingDescriptor.VRING_BASE_INITIAL);
            h.frontEnd.sync();
            VringInflight vi = h.device.running().get(0).inflight();
            assertNotNull(vi.packed(), "a packed ring gets the packed layout");
            assertTrue(vi.packedRecovery().fresh());
            InflightRegionPacked region = vi.packed();
            // chain A (id 7, three descriptors) then chain B (id 9, two); B completes
            region.descriptorFetched(0x1000, 16, 7, avail | next, true, false);
            region.descriptorFetched(0x2000, 4096, 7, avail | next, false, false);
            region.descriptorFetched(0x3000, 1, 7, avail | write, false, true);
            region.descriptorFetched(0x4000, 16, 9, avail | next, true, false);
            int entryB = region.descriptorFetched(0x5000, 1, 9, avail | write, false, true);
            int[] batch = {entryB};
            region.batchBegin(batch, 1);
            region.batchEnd(batch, 1);
        }
        try (BackendHarness h = new BackendHarness(packedDevice())) {
            setInflight(h, b);
            // QEMU 7.2 cannot restore a packed ring's positions after a back-end crash: it sends its stale ones
            h.startRings(true, PackedRingDescriptor.VRING_BASE_INITIAL);
            h.frontEnd.sync();
            FakeVhostUserDevice.Started s = h.device.running().get(0);
            VringInflight vi = s.inflight();
            assertEquals(1, vi.resubmitChains().size());
            InflightChain a = vi.resubmitChains().getFirst();
            assertEquals(
                    List.of(
                            new InflightDesc(0x1000, 16, 7, avail | next),
                            new InflightDesc(0x2000, 4096, 7, avail | next),
                            new InflightDesc(0x3000, 1, 7, avail | write)),
                    a.descriptors());
            assertEquals(PackedRingDescriptor.encodeIndex(5, true), s.lastAvailIdx(), "2 used + 3 in flight");
            assertEquals(PackedRingDescriptor.encodeIndex(2, true), s.usedIdx(), "B's two descriptors");
        }
        Unistd.close(b.fd());
    }

    @Test
    void shouldRefuseBufferSmallerThanItsDescriptionWhenFrontEndSetsIt() {
        Buffer b;
        try (BackendHarness h = new BackendHarness(oneQueueDevice())) {
            b = getInflight(h);
        }
        try (BackendHarness h = new BackendHarness(oneQueueDevice())) {
            h.handshake();
            long features = h.frontEnd.getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
            assertEquals(0, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(features)));
            VhostUserInflight tooBig = new VhostUserInflight(1 << 20, 0, 1, QUEUE_SIZE);
            assertEquals(1, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_INFLIGHT_FD, tooBig, b.fd()));
            VhostUserInflight twoQueues = new VhostUserInflight(b.description().mmapSize(), 0, 2, QUEUE_SIZE);
            assertEquals(1, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_INFLIGHT_FD, twoQueues, b.fd()));
            VhostUserInflight misaligned = new VhostUserInflight(64, 8, 1, QUEUE_SIZE);
            assertEquals(1, h.frontEnd.ack(VhostUserRequest.VHOST_USER_SET_INFLIGHT_FD, misaligned, b.fd()));
            assertFalse(h.device.heldFds().containsValue("inflight"), "refused buffers are not kept");
            h.startRings(true, 0);
            h.frontEnd.sync();
            assertNull(h.device.running().get(0).inflight(), "no buffer, no region");
        }
        Unistd.close(b.fd());
    }
}
