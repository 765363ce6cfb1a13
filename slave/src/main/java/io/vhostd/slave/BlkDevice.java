package io.vhostd.slave;

import io.vhostd.journal.JournalMemoryRegion;
import io.vhostd.journal.SessionJournal;
import io.vhostd.journal.VringConfig;
import io.vhostd.journal.inflight.InflightChain;
import io.vhostd.journal.inflight.InflightDesc;
import io.vhostd.journal.inflight.InflightHead;
import io.vhostd.journal.inflight.InflightRegionSplit;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.vhost.backend.VhostUserDevice;
import io.vhostd.vhost.backend.VringInflight;
import io.vhostd.vhost.proto.VhostUserProtocolFeature;
import io.vhostd.vhost.virtio.GuestMemory;
import io.vhostd.vhost.virtio.GuestMemoryRegion;
import io.vhostd.vhost.virtio.PackedRingDescriptor;
import io.vhostd.vhost.virtio.PackedVirtqueue;
import io.vhostd.vhost.virtio.SplitVirtqueue;
import io.vhostd.vhost.virtio.VirtioBlk;
import io.vhostd.vhost.virtio.VirtioBlkConfig;
import io.vhostd.vhost.virtio.Virtqueue;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletionException;

/**
 * The virtio-blk device of one vhost-user session (virtio 1.2 §5.2), as the back-end sees it: offered features and
 * config space, and the bridge from ring start/stop to the controller's data path. Guest memory regions are
 * registered with the master before any command names them, and unregistered only after the queues drained.
 *
 * <p>Config space: capacity, seg_max, blk_size, topology (a 4 KiB physical block hint), the cache mode ({@code
 * writeback}, the only field the driver may write: VIRTIO_BLK_F_CONFIG_WCE, {@code VHOST_USER_SET_CONFIG}),
 * num_queues, and the DISCARD / WRITE_ZEROES limits ({@link ControllerAgent#MAX_DISCARD_SEG} segments of at most
 * {@link ControllerAgent#maxDiscardSectors} sectors, aligned to the logical block; {@code write_zeroes_may_unmap} 1:
 * a WRITE_ZEROES with VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP becomes a deallocating NVME_OPC_WRITE_ZEROES — a file bdev
 * punches a hole, a block device lets the kernel unmap — and reads back zeroes either way).
 */
final class BlkDevice implements VhostUserDevice {
    private static final System.Logger LOG = System.getLogger(BlkDevice.class.getName());

    /** Most memory slots we accept (QEMU uses min(this, its own limit)). */
    static final int MAX_MEM_SLOTS = 32;

    /**
     * Features offered: virtio-blk §5.2.3 and the ring features this back-end implements (split and packed rings).
     * A read-only controller adds VIRTIO_BLK_F_RO and drops DISCARD / WRITE_ZEROES ({@link #features()}).
     */
    static final long FEATURES = VirtioBlk.VIRTIO_F_VERSION_1_MASK
            | VirtioBlk.VIRTIO_RING_F_INDIRECT_DESC_MASK
            | VirtioBlk.VIRTIO_RING_F_EVENT_IDX_MASK
            | VirtioBlk.VIRTIO_F_RING_PACKED_MASK
            | VirtioBlk.VIRTIO_BLK_F_SEG_MAX_MASK
            | VirtioBlk.VIRTIO_BLK_F_BLK_SIZE_MASK
            | VirtioBlk.VIRTIO_BLK_F_FLUSH_MASK
            | VirtioBlk.VIRTIO_BLK_F_TOPOLOGY_MASK
            | VirtioBlk.VIRTIO_BLK_F_CONFIG_WCE_MASK
            | VirtioBlk.VIRTIO_BLK_F_MQ_MASK
            | VirtioBlk.VIRTIO_BLK_F_DISCARD_MASK
            | VirtioBlk.VIRTIO_BLK_F_WRITE_ZEROES_MASK;

    /**
     * Protocol features offered (vhost-user.rst "Protocol features"). BACKEND_REQ: the back-end accepts and holds the
     * channel QEMU 7.2 then sends ({@code SET_BACKEND_REQ_FD}) and sends nothing on it yet; RESET_DEVICE: QEMU uses it
     * instead of the deprecated RESET_OWNER; STATUS: QEMU 7.2 reports the device status (the back-end records it);
     * INFLIGHT_SHMFD: split rings record every request in the inflight region QEMU keeps across a whole-daemon restart
     * (QEMU's vhost-user-blk asks for it whenever it is offered).
     */
    static final long PROTOCOL_FEATURES = VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_MQ_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_REPLY_ACK_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_BACKEND_REQ_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CONFIG_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_RESET_DEVICE_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_STATUS_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_MASK;

    /** The physical block the topology reports when the logical block is smaller (host pages, filesystem blocks). */
    static final int PHYSICAL_BLOCK_BYTES = 4096;

    private final SlaveController controller;
    private final MasterLink master;
    private volatile GuestMemory memory = GuestMemory.empty();
    private volatile long negotiatedFeatures;
    private final List<Integer> registeredRegions = new java.util.concurrent.CopyOnWriteArrayList<>();
    /** The controller's session journal (issue #4), or null: then nothing is recorded and nothing can be adopted. */
    private final SessionJournal journal;
    /** Rolling upgrade: queue index → the requests the previous slave left at the device; null otherwise. */
    private Map<Integer, ControlMessage.CarriedQueue> carried;

    /** Restoring a dead slave's session: queue index → heads to resubmit; null once the queues restarted. */
    private Map<Integer, int[]> replay;
    /** The journal failed (a ring it cannot track, an inconsistency): recording stops for this session. */
    private boolean journalBroken;

    BlkDevice(SlaveController controller, MasterLink master, SessionJournal journal) {
        this.controller = controller;
        this.master = master;
        this.journal = journal;
    }

    /** The session continues a dead slave's ({@link VhostUserDevice#sessionRestored}); these requests are replayed. */
    void restoring(Map<Integer, int[]> replayHeads) {
        this.replay = replayHeads;
    }

    /**
     * {@link #restoring(Map)} in a rolling upgrade (issue #4): of the journal's requests in flight, those in {@code
     * carriedOver} still have commands at the device (the previous slave submitted them); they are taken over by the
     * data path, not replayed. Validated against the journal by the caller.
     */
    void restoring(Map<Integer, int[]> replayHeads, Map<Integer, ControlMessage.CarriedQueue> carriedOver) {
        this.replay = replayHeads;
        this.carried = carriedOver;
        this.restoredRunners = new ArrayList<>();
    }

    /** The restored session's started queues, built and not yet on the data path; null outside a restore. */
    private List<QueueRunner> restoredRunners;

    /**
     * After the back-end restored the session ({@link #restoring(Map, Map)}): hands every started queue to the
     * data-path thread in one command (issue #4) and waits until it took them.
     *
     * @return when the data-path thread had taken them (System.nanoTime), or now if none was started
     * @throws IllegalStateException if a queue could not start (its carried requests malformed, or started twice)
     */
    long startRestoredQueues() {
        List<QueueRunner> runners = restoredRunners;
        restoredRunners = null;
        if (runners == null || runners.isEmpty()) {
            return System.nanoTime();
        }
        try {
            return controller.agent().startQueuesAsync(runners).join();
        } catch (CompletionException e) {
            throw new IllegalStateException(
                    "restored queue did not start: " + e.getCause().getMessage(), e);
        }
    }

    /** Runs one configuration record; a journal error stops recording for this session (logged once). */
    private void record(String what, Runnable change) {
        if (journal == null || journalBroken) {
            return;
        }
        try {
            change.run();
        } catch (RuntimeException e) {
            journalBroken = true;
            LOG.log(
                    System.Logger.Level.ERROR,
                    controller.spec().name() + ": journal " + what + " failed; this session cannot be handed over: "
                            + e.getMessage());
        }
    }

    /** The config space as it is now ({@code writeback} follows the controller's cache mode). */
    static VirtioBlkConfig configOf(ControlMessage.AddController spec, boolean writeback) {
        int blockSize = spec.blockSizeBytes();
        int physical = Math.max(blockSize, PHYSICAL_BLOCK_BYTES);
        int discardSectors = (int) ControllerAgent.maxDiscardSectors(blockSize);
        return new VirtioBlkConfig(
                spec.capacityBytes() / VirtioBlk.SECTOR_SIZE,
                0,
                spec.maxSegments() - 2, // seg_max: the header and the status byte take a descriptor each
                blockSize,
                Integer.numberOfTrailingZeros(physical / blockSize),
                1,
                0,
                writeback ? 1 : 0,
                spec.numQueues(),
                discardSectors,
                ControllerAgent.MAX_DISCARD_SEG,
                blockSize / VirtioBlk.SECTOR_SIZE,
                discardSectors,
                ControllerAgent.MAX_WRITE_ZEROES_SEG,
                1);
    }

    @Override
    public long features() {
        long f = FEATURES;
        if (controller.spec().readOnly()) {
            f |= VirtioBlk.VIRTIO_BLK_F_RO_MASK;
            f &= ~(VirtioBlk.VIRTIO_BLK_F_DISCARD_MASK | VirtioBlk.VIRTIO_BLK_F_WRITE_ZEROES_MASK);
        }
        return f;
    }

    @Override
    public long protocolFeatures() {
        return PROTOCOL_FEATURES;
    }

    @Override
    public int maxQueues() {
        return controller.spec().numQueues();
    }

    @Override
    public int maxMemSlots() {
        return MAX_MEM_SLOTS;
    }

    @Override
    public byte[] config() {
        return configOf(controller.spec(), controller.agent().writeback()).toBytes();
    }

    /**
     * Only {@code writeback} is writable, and only with VIRTIO_BLK_F_CONFIG_WCE negotiated (§5.2.5 "the driver MAY
     * switch to writethrough or writeback mode by writing respectively 0 and 1"); any other byte of the window must
     * keep its value. QEMU 7.2 writes exactly that byte ({@code vhost_user_blk_set_config}).
     */
    @Override
    public String setConfig(int offset, byte[] data, int flags) {
        byte[] current = config();
        int writeback = -1;
        for (int i = 0; i < data.length; i++) {
            int at = offset + i;
            if (at == VirtioBlkConfig.WRITEBACK_OFFSET) {
                writeback = data[i] & 0xFF;
            } else if (data[i] != current[at]) {
                return "config byte " + at + " is read-only";
            }
        }
        if (writeback < 0) {
            return null;
        }
        if ((negotiatedFeatures & VirtioBlk.VIRTIO_BLK_F_CONFIG_WCE_MASK) == 0) {
            return "writeback written without VIRTIO_BLK_F_CONFIG_WCE";
        }
        if (writeback > 1) {
            return "writeback " + writeback + " is neither 0 (writethrough) nor 1 (writeback)";
        }
        boolean writebackMode = writeback == 1;
        controller.agent().writeback(writebackMode);
        record("cache mode", () -> journal.recordCacheMode(writebackMode));
        LOG.log(
                System.Logger.Level.INFO,
                controller.spec().name() + ": cache mode " + (writeback == 1 ? "writeback" : "write-through"));
        return null;
    }

    @Override
    public void featuresNegotiated(long features) {
        this.negotiatedFeatures = features;
        record("features", () -> journal.recordFeatures(features));
        // §5.2.5.2: CONFIG_WCE without FLUSH: the device MUST initialize writeback to 0
        if ((features & VirtioBlk.VIRTIO_BLK_F_CONFIG_WCE_MASK) != 0
                && (features & VirtioBlk.VIRTIO_BLK_F_FLUSH_MASK) == 0) {
            controller.agent().writeback(false);
        }
        controller.reportState(this);
    }

    @Override
    public void protocolFeaturesNegotiated(long protocolFeatures) {
        record("protocol features", () -> journal.recordProtocolFeatures(protocolFeatures));
    }

    /**
     * A dead slave's session continues here: the master still holds the regions under their ids (nothing is
     * registered again) and the journal already holds the features and the table.
     */
    @Override
    public void sessionRestored(
            long features, long protocolFeatures, GuestMemory restoredMemory, List<GuestMemoryRegion> regions) {
        this.negotiatedFeatures = features;
        for (GuestMemoryRegion r : regions) {
            registeredRegions.add(r.regionId());
        }
        this.memory = restoredMemory;
        controller.reportState(this);
    }

    /**
     * Why this session cannot be continued by another slave now (issue #4 rolling upgrade), or null: its negotiated
     * features and memory table and every started queue must be in the journal.
     */
    String handoverRefusal() {
        String name = controller.spec().name();
        if (journal == null) {
            return name + ": the session has no journal";
        }
        if (journalBroken) {
            return name + ": the session journal failed earlier; the session cannot be handed over";
        }
        if (negotiatedFeatures == 0 || memory.regionCount() == 0) {
            return name + ": the front-end is still negotiating the session; try again";
        }
        for (int i = 0; i < controller.spec().numQueues(); i++) {
            QueueRunner q = controller.agent().queue(i);
            if (q != null && !q.journaled) {
                return name + ": queue " + i + " is not journaled; the session cannot be handed over";
            }
        }
        return null;
    }

    long negotiatedFeatures() {
        return negotiatedFeatures;
    }

    /**
     * The guest memory regions registered with the master for this session (a restarted master gets them again,
     * issue #4).
     */
    List<GuestMemoryRegion> registeredMemory() {
        List<Integer> ids = List.copyOf(registeredRegions);
        List<GuestMemoryRegion> out = new ArrayList<>();
        for (GuestMemoryRegion r : memory.regions()) {
            if (ids.contains(r.regionId()) && r.fd() >= 0) {
                out.add(r);
            }
        }
        return out;
    }

    @Override
    public void memoryChanged(GuestMemory newMemory, List<GuestMemoryRegion> added, List<GuestMemoryRegion> removed) {
        String name = controller.spec().name();
        for (GuestMemoryRegion r : added) {
            long id = master.nextRequestId();
            master.request(
                    id,
                    new ControlMessage.RegisterRegion(id, name, r.regionId(), r.sizeBytes(), r.mmapOffset()),
                    r.fd());
            registeredRegions.add(r.regionId());
        }
        this.memory = newMemory;
        List<JournalMemoryRegion> table = new ArrayList<>();
        for (GuestMemoryRegion r : newMemory.regions()) {
            table.add(new JournalMemoryRegion(
                    r.guestPhysAddr(), r.sizeBytes(), r.userAddr(), r.mmapOffset(), r.regionId()));
        }
        record("memory table", () -> journal.recordMemoryTable(table));
        for (GuestMemoryRegion r : removed) {
            long id = master.nextRequestId();
            master.request(id, new ControlMessage.UnregisterRegion(id, name, r.regionId()));
            registeredRegions.remove((Integer) r.regionId());
        }
    }

    @Override
    public void startQueue(int queueIndex, Virtqueue vq, int kickFd, int callFd, int errFd) {
        startQueue(queueIndex, vq, kickFd, callFd, errFd, null);
    }

    @Override
    public void startQueue(int queueIndex, Virtqueue vq, int kickFd, int callFd, int errFd, VringInflight inflight) {
        SlaveController.Qpair qpair = controller.qpair(queueIndex);
        VirtNvmeQueuePair qp = qpair.qp();
        // CIDs are allocated apart from ring ids: any ring size works with any queue depth (requests wait for CIDs)
        QueueRunner runner = new QueueRunner(
                queueIndex, vq, memory, kickFd, callFd, qp, qpair.sqEventFd(), qpair.cqEventFd(), negotiatedFeatures);
        int[] heads = replay == null ? null : replay.remove(queueIndex);
        int[] reconnectHeads = null;
        if (inflight != null && inflight.packed() != null) {
            runner.packedRegion = inflight.packed();
            List<InflightChain> chains = inflight.resubmitChains();
            if (!chains.isEmpty()) {
                runner.replayChains = chains.toArray(new InflightChain[0]);
                LOG.log(
                        System.Logger.Level.INFO,
                        controller.spec().name() + ": queue " + queueIndex + ": resubmitting " + chains.size()
                                + " requests from the inflight region (front-end reconnected)");
            }
        } else if (inflight != null) {
            runner.inflightRegion = inflight.split();
            if (heads != null) {
                heads = reconcileInflight(queueIndex, inflight, heads);
            } else if (!inflight.resubmit().isEmpty()) {
                reconnectHeads = inflight.resubmit().stream()
                        .mapToInt(InflightHead::head)
                        .toArray();
                runner.replayHeads = reconnectHeads;
                LOG.log(
                        System.Logger.Level.INFO,
                        controller.spec().name() + ": queue " + queueIndex + ": resubmitting " + reconnectHeads.length
                                + " requests from the inflight region (front-end reconnected)");
            }
        }
        ControlMessage.CarriedQueue carriedQueue = carried == null ? null : carried.remove(queueIndex);
        if (heads != null && carriedQueue != null) {
            // issue #4 rolling upgrade: these have commands at the device; the data path takes them over
            Set<Integer> taken = new HashSet<>(carriedQueue.heads());
            heads = java.util.Arrays.stream(heads)
                    .filter(h -> !taken.contains(h))
                    .toArray();
            runner.carried = carriedQueue;
        }
        int[] resubmitted = reconnectHeads;
        if (heads != null && vq instanceof PackedVirtqueue) {
            // restored packed ring: the chains are resubmitted (and carried ones taken over) from the journal's
            // descriptor copies (journal.md §6.5), never re-read from ring positions the device may have overwritten
            runner.journaled = true;
            runner.replayChains = restorePacked(queueIndex, heads, inflight, runner);
        } else if (heads != null) {
            // restored: the journal already holds this queue as started, with these requests in flight
            runner.journaled = true;
            runner.replayHeads = heads;
        } else if (journal != null && !journalBroken && vq instanceof PackedVirtqueue packed) {
            // journal.md §6.5: vring (one cell per ring descriptor), enabled, started at the ring's positions, before
            // the data path runs; chains a reconnect resubmits are recorded as fetched at [used, last avail)
            InflightChain[] reconnectChains = runner.replayChains;
            record("queue start", () -> {
                journal.recordVring(
                        queueIndex,
                        new VringConfig(
                                packed.size(),
                                true,
                                packed.descGpa(),
                                packed.driverEventGpa(),
                                packed.deviceEventGpa(),
                                0,
                                0,
                                packed.size(),
                                true));
                journal.recordVringEnabled(queueIndex, true);
                int used = packed.usedIdx();
                journal.recordQueueStarted(
                        queueIndex, reconnectChains.length == 0 ? packed.lastAvailIdx() : used, used);
                int offset = used & PackedRingDescriptor.VRING_BASE_OFFSET_MASK;
                boolean wrap = (used & PackedRingDescriptor.VRING_BASE_WRAP_MASK) != 0;
                for (InflightChain c : reconnectChains) {
                    int id = c.descriptors().getLast().id();
                    for (InflightDesc d : c.descriptors()) {
                        journal.packedDescriptorFetched(queueIndex, id, d.addr(), d.len(), d.id(), d.flags());
                        if (++offset == packed.size()) {
                            offset = 0;
                            wrap = !wrap;
                        }
                    }
                    journal.packedChainFetched(queueIndex, id, PackedRingDescriptor.encodeIndex(offset, wrap));
                }
                runner.journaled = true;
            });
        } else if (journal != null && !journalBroken && vq instanceof SplitVirtqueue split) {
            // journal.md "Wiring notes": vring, enabled, started (with used->idx read now), before the data path runs
            record("queue start", () -> {
                journal.recordVring(
                        queueIndex,
                        new VringConfig(
                                split.size(),
                                false,
                                split.descGpa(),
                                split.availGpa(),
                                split.usedRingGpa(),
                                0,
                                0,
                                split.size(),
                                false));
                journal.recordVringEnabled(queueIndex, true);
                if (resubmitted == null) {
                    journal.recordQueueStarted(queueIndex, split.lastAvailIdx(), split.usedIdxInRingAcquire());
                } else {
                    // the resubmitted heads took the avail entries [used, used + n) (libvhost-user's last_avail_idx =
                    // used_idx + inuse): recorded as fetched there, so that a slave crash during the replay hands them
                    // on
                    int used = split.usedIdxInRingAcquire();
                    journal.recordQueueStarted(queueIndex, used, used);
                    for (int k = 0; k < resubmitted.length; k++) {
                        journal.requestFetched(queueIndex, resubmitted[k], (used + k + 1) & 0xFFFF);
                    }
                }
                runner.journaled = true;
            });
        }
        List<QueueRunner> restored = restoredRunners;
        if (restored != null) {
            // a restored session: every queue goes to the data path at once, in startRestoredQueues
            restored.add(runner);
        } else {
            controller.agent().startQueue(runner);
        }
        LOG.log(
                System.Logger.Level.DEBUG,
                controller.spec().name() + ": queue " + queueIndex + " started, " + (vq.packed() ? "packed" : "split")
                        + ", size " + vq.size());
        controller.reportState(this);
    }

    /**
     * A restored packed queue (journal.md §6.5): the journal's chains in flight ({@code ids}, fetch order, without the
     * carried ones) become the chains to resubmit, from the journal's descriptor copies; carried chains are kept for
     * the take-over. The dead slave's packed inflight region, continued, holds the same chains except the newest when
     * it died between its journal record and its region record (the data path records the journal first): those are
     * recorded in the region now. Chains only the region holds (not expected) are resubmitted too, first.
     */
    private InflightChain[] restorePacked(int queueIndex, int[] ids, VringInflight inflight, QueueRunner runner) {
        Map<Integer, InflightChain> regionChains = new HashMap<>();
        if (inflight != null && inflight.packed() != null) {
            for (InflightChain c : inflight.packedRecovery().resubmit()) {
                regionChains.put(c.descriptors().getLast().id(), c);
            }
        }
        List<InflightChain> out = new ArrayList<>();
        ControlMessage.CarriedQueue carriedQueue = runner.carried;
        List<Integer> carriedIds = carriedQueue == null ? List.of() : carriedQueue.heads();
        Set<Integer> journalIds = new HashSet<>(carriedIds);
        for (int id : ids) {
            journalIds.add(id);
        }
        for (Map.Entry<Integer, InflightChain> e : regionChains.entrySet()) {
            if (!journalIds.contains(e.getKey())) {
                LOG.log(
                        System.Logger.Level.WARNING,
                        controller.spec().name() + ": queue " + queueIndex + ": the inflight region holds buffer id "
                                + e.getKey() + " that the journal does not; resubmitted first");
                out.add(e.getValue());
            }
        }
        for (int id : ids) {
            out.add(journalChain(queueIndex, id, regionChains, runner));
        }
        if (!carriedIds.isEmpty()) {
            runner.carriedChains = new InflightChain[runner.vq.size()];
            for (int id : carriedIds) {
                runner.carriedChains[id] = journalChain(queueIndex, id, regionChains, runner);
            }
        }
        return out.toArray(new InflightChain[0]);
    }

    /** A journal chain with its packed region entry (recorded in the region now if the region lacks it). */
    private InflightChain journalChain(
            int queueIndex, int id, Map<Integer, InflightChain> regionChains, QueueRunner runner) {
        List<InflightDesc> copies = journal.packedChain(queueIndex, id);
        InflightChain inRegion = regionChains.get(id);
        int headEntry = inRegion == null ? -1 : inRegion.headEntry();
        if (inRegion == null && runner.packedRegion != null) {
            for (int k = 0; k < copies.size(); k++) {
                InflightDesc d = copies.get(k);
                headEntry = runner.packedRegion.descriptorFetched(
                        d.addr(), d.len(), d.id(), d.flags(), k == 0, k == copies.size() - 1);
            }
        }
        return new InflightChain(headEntry, 0, copies);
    }

    /**
     * A restored session's queue: the journal's in-flight heads ({@code journalHeads}, fetch order) are what the dead
     * slave left (without a rolling upgrade's carried ones, which are in flight in the region too and taken over); the
     * inflight region holds the same heads except the newest when the slave died between its journal
     * record and its region mark (the data path records the journal first): those are marked now. Heads only the region
     * holds (not expected) are replayed too, first (they are older), so that nothing marked stays in flight forever.
     *
     * @return the heads to replay, oldest first
     */
    private int[] reconcileInflight(int queueIndex, VringInflight inflight, int[] journalHeads) {
        InflightRegionSplit region = inflight.split();
        List<Integer> regionOnly = new ArrayList<>();
        Set<Integer> journalSet = new HashSet<>();
        for (int h : journalHeads) {
            journalSet.add(h);
        }
        ControlMessage.CarriedQueue carriedQueue = carried == null ? null : carried.get(queueIndex);
        if (carriedQueue != null) {
            // a rolling upgrade's carried requests are in flight in the region and completed by the take-over
            journalSet.addAll(carriedQueue.heads());
        }
        for (InflightHead h : inflight.recovery().resubmit()) {
            if (!journalSet.contains(h.head())) {
                regionOnly.add(h.head());
            }
        }
        for (int h : journalHeads) {
            if (!region.isInflight(h)) {
                region.fetched(h);
            }
        }
        if (regionOnly.isEmpty()) {
            return journalHeads;
        }
        LOG.log(
                System.Logger.Level.WARNING,
                controller.spec().name() + ": queue " + queueIndex + ": the inflight region holds " + regionOnly
                        + " that the journal does not; replayed first");
        int[] all = new int[regionOnly.size() + journalHeads.length];
        for (int i = 0; i < regionOnly.size(); i++) {
            all[i] = regionOnly.get(i);
        }
        System.arraycopy(journalHeads, 0, all, regionOnly.size(), journalHeads.length);
        return all;
    }

    @Override
    public int stopQueue(int queueIndex) {
        boolean journaled = controller.agent().queue(queueIndex) != null
                && controller.agent().queue(queueIndex).journaled;
        int next = controller.agent().stopQueue(queueIndex);
        if (journaled) {
            // drained: nothing in flight, no batch pending (journal.md §6.3 recordQueueStopped)
            record("queue stop", () -> journal.recordQueueStopped(queueIndex));
        }
        controller.reportState(this);
        return next;
    }

    @Override
    public void fdReceived(String what, int index, int fd) {
        controller.custody(what, index, fd);
    }

    @Override
    public void fdReleased(String what, int index, int fd) {
        if (what.equals("connection")) {
            // released by sessionEnded (from disconnected()) before the next connection is accepted; a release sent
            // here, later, would make the master close its copy of that next connection (issue #4)
            return;
        }
        controller.releaseCustody(what, index);
    }

    @Override
    public void disconnected() {
        String name = controller.spec().name();
        for (Integer regionId : List.copyOf(registeredRegions)) {
            try {
                long id = master.nextRequestId();
                master.request(id, new ControlMessage.UnregisterRegion(id, name, regionId));
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, name + ": unregister region " + regionId + ": " + e.getMessage());
            }
        }
        registeredRegions.clear();
        memory = GuestMemory.empty();
        // every queue was stopped first (VhostUserBackend.close)
        record("session reset", () -> journal.recordSessionReset());
        controller.sessionEnded(this);
    }
}
