package io.vhostd.vhost.backend;

import io.vhostd.vhost.proto.VhostUserProtocolFeature;
import io.vhostd.vhost.virtio.GuestMemory;
import io.vhostd.vhost.virtio.GuestMemoryRegion;
import io.vhostd.vhost.virtio.SplitVirtqueue;
import io.vhostd.vhost.virtio.VirtioBlk;
import io.vhostd.vhost.virtio.Virtqueue;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

/**
 * A {@link VhostUserDevice} that records every call. The back-end calls it on its connection thread, the test reads
 * it on another: every method is synchronized.
 */
final class FakeVhostUserDevice implements VhostUserDevice {
    /** virtio-blk-like offer: VERSION_1, EVENT_IDX, INDIRECT_DESC, SEG_MAX, BLK_SIZE, FLUSH, MQ, and LOG_ALL. */
    static final long FEATURES = VirtioBlk.VIRTIO_F_VERSION_1_MASK
            | VirtioBlk.VIRTIO_RING_F_EVENT_IDX_MASK
            | VirtioBlk.VIRTIO_RING_F_INDIRECT_DESC_MASK
            | VirtioBlk.VIRTIO_BLK_F_SEG_MAX_MASK
            | VirtioBlk.VIRTIO_BLK_F_BLK_SIZE_MASK
            | VirtioBlk.VIRTIO_BLK_F_FLUSH_MASK
            | VirtioBlk.VIRTIO_BLK_F_MQ_MASK;

    /** Everything the back-end supports (INFLIGHT_SHMFD included), plus LOG_SHMFD, which it must not offer. */
    static final long PROTOCOL_FEATURES = VhostUserBackend.SUPPORTED_PROTOCOL_FEATURES
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_LOG_SHMFD_MASK;

    static final int CONFIG_BYTES = 60;

    /** The one config byte {@link #setConfig} accepts. */
    static final int WRITABLE_CONFIG_OFFSET = 32;

    /** One startQueue call; {@code inflight} the queue's inflight region or null. */
    record Started(
            int queueIndex,
            Virtqueue vq,
            int lastAvailIdx,
            int usedIdx,
            int kickFd,
            int callFd,
            int errFd,
            VringInflight inflight) {
        /** The ring as a split ring (the tests that use this negotiate split rings). */
        SplitVirtqueue split() {
            return (SplitVirtqueue) vq;
        }
    }

    private final long features;
    private final long protocolFeatures;
    private final int maxQueues;
    private final int maxMemSlots;
    private final byte[] config;

    private final List<String> calls = new ArrayList<>();
    private final Map<Integer, Started> running = new HashMap<>();
    private final List<Started> starts = new ArrayList<>();
    private final Map<Integer, String> heldFds = new HashMap<>();
    private final CountDownLatch disconnected = new CountDownLatch(1);
    private GuestMemory memory = GuestMemory.empty();
    private List<GuestMemoryRegion> lastAdded = List.of();
    private List<GuestMemoryRegion> lastRemoved = List.of();
    private long negotiated = -1;
    private int stopAdvance;
    private boolean refuseMemory;
    private boolean failStart;

    FakeVhostUserDevice(long features, long protocolFeatures, int maxQueues, int maxMemSlots) {
        this.features = features;
        this.protocolFeatures = protocolFeatures;
        this.maxQueues = maxQueues;
        this.maxMemSlots = maxMemSlots;
        this.config = new byte[CONFIG_BYTES];
        for (int i = 0; i < config.length; i++) {
            config[i] = (byte) (0x40 + i);
        }
    }

    FakeVhostUserDevice() {
        this(FEATURES, PROTOCOL_FEATURES, 2, 8);
    }

    @Override
    public long features() {
        return features;
    }

    @Override
    public long protocolFeatures() {
        return protocolFeatures;
    }

    @Override
    public int maxQueues() {
        return maxQueues;
    }

    @Override
    public int maxMemSlots() {
        return maxMemSlots;
    }

    @Override
    public synchronized byte[] config() {
        return config.clone();
    }

    /** Accepts a write of 0 or 1 to byte {@link #WRITABLE_CONFIG_OFFSET} only (like virtio-blk's writeback). */
    @Override
    public synchronized String setConfig(int offset, byte[] data, int flags) {
        calls.add("setConfig " + offset + " " + data.length);
        if (offset != WRITABLE_CONFIG_OFFSET || data.length != 1 || (data[0] & 0xFF) > 1) {
            return "only byte " + WRITABLE_CONFIG_OFFSET + " is writable";
        }
        config[WRITABLE_CONFIG_OFFSET] = data[0];
        return null;
    }

    @Override
    public synchronized void featuresNegotiated(long features) {
        calls.add("featuresNegotiated");
        negotiated = features;
    }

    @Override
    public synchronized void memoryChanged(
            GuestMemory memory, List<GuestMemoryRegion> added, List<GuestMemoryRegion> removed) {
        calls.add("memoryChanged");
        if (!running.isEmpty()) {
            throw new AssertionError("memoryChanged while queues run: " + running.keySet());
        }
        if (refuseMemory) {
            throw new IllegalStateException("refused by the test");
        }
        this.memory = memory;
        this.lastAdded = List.copyOf(added);
        this.lastRemoved = List.copyOf(removed);
    }

    @Override
    public synchronized void startQueue(int queueIndex, Virtqueue vq, int kickFd, int callFd, int errFd) {
        startQueue(queueIndex, vq, kickFd, callFd, errFd, null);
    }

    @Override
    public synchronized void startQueue(
            int queueIndex, Virtqueue vq, int kickFd, int callFd, int errFd, VringInflight inflight) {
        calls.add("startQueue " + queueIndex);
        if (failStart) {
            throw new IllegalStateException("start refused by the test");
        }
        if (running.containsKey(queueIndex)) {
            throw new AssertionError("queue " + queueIndex + " started twice");
        }
        Started s = new Started(queueIndex, vq, vq.lastAvailIdx(), vq.usedIdx(), kickFd, callFd, errFd, inflight);
        running.put(queueIndex, s);
        starts.add(s);
    }

    @Override
    public synchronized int stopQueue(int queueIndex) {
        calls.add("stopQueue " + queueIndex);
        Started s = running.remove(queueIndex);
        if (s == null) {
            throw new AssertionError("queue " + queueIndex + " stopped but not running");
        }
        if (s.vq.packed()) {
            return s.vq.vringBase();
        }
        // as if the data path had fetched (and completed) stopAdvance requests
        return (s.lastAvailIdx + stopAdvance) & 0xFFFF;
    }

    @Override
    public synchronized void fdReceived(String what, int index, int fd) {
        calls.add("fdReceived " + what + " " + index);
        if (heldFds.put(fd, what) != null) {
            throw new AssertionError("fd " + fd + " received twice");
        }
    }

    @Override
    public synchronized void fdReleased(String what, int index, int fd) {
        calls.add("fdReleased " + what + " " + index);
        if (!what.equals(heldFds.remove(fd))) {
            throw new AssertionError("fd " + fd + " (" + what + ") released but not held");
        }
    }

    @Override
    public synchronized void disconnected() {
        calls.add("disconnected");
        if (!running.isEmpty()) {
            throw new AssertionError("disconnected while queues run: " + running.keySet());
        }
        disconnected.countDown();
    }

    synchronized List<String> calls() {
        return List.copyOf(calls);
    }

    synchronized long count(String call) {
        return calls.stream().filter(call::equals).count();
    }

    synchronized Map<Integer, Started> running() {
        return Map.copyOf(running);
    }

    synchronized List<Started> starts() {
        return List.copyOf(starts);
    }

    synchronized Map<Integer, String> heldFds() {
        return Map.copyOf(heldFds);
    }

    synchronized GuestMemory memory() {
        return memory;
    }

    synchronized List<GuestMemoryRegion> lastAdded() {
        return lastAdded;
    }

    synchronized List<GuestMemoryRegion> lastRemoved() {
        return lastRemoved;
    }

    synchronized long negotiated() {
        return negotiated;
    }

    synchronized void stopAdvance(int requests) {
        this.stopAdvance = requests;
    }

    synchronized void refuseMemory(boolean refuse) {
        this.refuseMemory = refuse;
    }

    synchronized void failStart(boolean fail) {
        this.failStart = fail;
    }

    CountDownLatch disconnectedLatch() {
        return disconnected;
    }
}
