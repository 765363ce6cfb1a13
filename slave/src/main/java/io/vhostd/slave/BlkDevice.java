package io.vhostd.slave;

import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.vhost.backend.VhostUserDevice;
import io.vhostd.vhost.proto.VhostUserProtocolFeature;
import io.vhostd.vhost.virtio.GuestMemory;
import io.vhostd.vhost.virtio.GuestMemoryRegion;
import io.vhostd.vhost.virtio.SplitVirtqueue;
import io.vhostd.vhost.virtio.VirtioBlk;
import io.vhostd.vhost.virtio.VirtioBlkConfig;
import java.util.ArrayList;
import java.util.List;

/**
 * The virtio-blk device of one vhost-user session (virtio 1.2 §5.2), as the back-end sees it: offered features and
 * config space, and the bridge from ring start/stop to the controller's data path. Guest memory regions are
 * registered with the master before any command names them, and unregistered only after the queues drained.
 */
final class BlkDevice implements VhostUserDevice {
    private static final System.Logger LOG = System.getLogger(BlkDevice.class.getName());

    /** Most memory slots we accept (QEMU uses min(this, its own limit)). */
    static final int MAX_MEM_SLOTS = 32;

    /** Features offered: virtio-blk §5.2.3 and the ring features this back-end implements. */
    static final long FEATURES = VirtioBlk.VIRTIO_F_VERSION_1_MASK
            | VirtioBlk.VIRTIO_RING_F_INDIRECT_DESC_MASK
            | VirtioBlk.VIRTIO_RING_F_EVENT_IDX_MASK
            | (1L << VirtioBlk.VIRTIO_BLK_F_SEG_MAX_BIT)
            | (1L << VirtioBlk.VIRTIO_BLK_F_BLK_SIZE_BIT)
            | (1L << VirtioBlk.VIRTIO_BLK_F_FLUSH_BIT)
            | (1L << VirtioBlk.VIRTIO_BLK_F_MQ_BIT);

    /** Protocol features offered (vhost-user.rst "Protocol features"). */
    static final long PROTOCOL_FEATURES = VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_MQ_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_REPLY_ACK_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CONFIG_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_MASK;

    private final SlaveController controller;
    private final MasterLink master;
    private final byte[] config;
    private volatile GuestMemory memory = GuestMemory.empty();
    private volatile long negotiatedFeatures;
    private final List<Integer> registeredRegions = new ArrayList<>();

    BlkDevice(SlaveController controller, MasterLink master) {
        this.controller = controller;
        this.master = master;
        ControlMessage.AddController spec = controller.spec();
        int segMax = spec.maxSegments() - 2; // the header and the status byte take a descriptor each
        this.config = new VirtioBlkConfig(
                        spec.capacityBytes() / VirtioBlk.SECTOR_SIZE,
                        0,
                        segMax,
                        spec.blockSizeBytes(),
                        0,
                        0,
                        0,
                        0,
                        spec.numQueues(),
                        0,
                        0,
                        0,
                        0,
                        0,
                        0)
                .toBytes();
    }

    @Override
    public long features() {
        long f = FEATURES;
        if (controller.spec().readOnly()) {
            f |= 1L << VirtioBlk.VIRTIO_BLK_F_RO_BIT;
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
        return config.clone();
    }

    @Override
    public void featuresNegotiated(long features) {
        this.negotiatedFeatures = features;
        controller.reportState(this);
    }

    long negotiatedFeatures() {
        return negotiatedFeatures;
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
        for (GuestMemoryRegion r : removed) {
            long id = master.nextRequestId();
            master.request(id, new ControlMessage.UnregisterRegion(id, name, r.regionId()));
            registeredRegions.remove((Integer) r.regionId());
        }
    }

    @Override
    public void startQueue(int queueIndex, SplitVirtqueue vq, int kickFd, int callFd, int errFd) {
        SlaveController.Qpair qpair = controller.qpair(queueIndex);
        VirtNvmeQueuePair qp = qpair.qp();
        if (vq.size() > qp.depth()) {
            // one VirtNvme CID per head index: a ring larger than the queue pair cannot be served
            throw new IllegalArgumentException("queue " + queueIndex + ": ring size " + vq.size()
                    + " exceeds the VirtNvme queue depth " + qp.depth());
        }
        controller
                .agent()
                .startQueue(new QueueRunner(
                        queueIndex, vq, memory, kickFd, callFd, qp, qpair.sqEventFd(), qpair.cqEventFd()));
        LOG.log(
                System.Logger.Level.DEBUG,
                controller.spec().name() + ": queue " + queueIndex + " started, size " + vq.size());
        controller.reportState(this);
    }

    @Override
    public int stopQueue(int queueIndex) {
        int next = controller.agent().stopQueue(queueIndex);
        controller.reportState(this);
        return next;
    }

    @Override
    public void fdReceived(String what, int index, int fd) {
        controller.custody(what, index, fd);
    }

    @Override
    public void fdReleased(String what, int index, int fd) {
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
        controller.sessionEnded(this);
    }
}
