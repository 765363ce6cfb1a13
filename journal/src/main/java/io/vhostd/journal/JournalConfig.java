package io.vhostd.journal;

import java.util.List;

/**
 * A session's committed configuration (spec §5): what the front-end negotiated and set up, as the last completed
 * configuration change left it.
 *
 * @param featuresSet {@code VHOST_USER_SET_FEATURES} was received
 * @param features the negotiated virtio features
 * @param protocolFeaturesSet {@code VHOST_USER_SET_PROTOCOL_FEATURES} was received
 * @param protocolFeatures the negotiated vhost-user protocol features
 * @param memoryTableSet a memory table was set
 * @param memoryTable the guest memory regions, in table order (at most {@link JournalDescriptor#MAX_MEM_REGIONS})
 * @param queues the configured virtqueues, by ascending index
 * @param writeback the device's cache mode (virtio-blk {@code writeback}: true writeback, false write-through), or
 *     null if none was recorded (version 1.1)
 */
public record JournalConfig(
        boolean featuresSet,
        long features,
        boolean protocolFeaturesSet,
        long protocolFeatures,
        boolean memoryTableSet,
        List<JournalMemoryRegion> memoryTable,
        List<QueueConfig> queues,
        Boolean writeback) {

    public JournalConfig {
        memoryTable = List.copyOf(memoryTable);
        queues = List.copyOf(queues);
    }

    /** A configuration with no cache mode recorded. */
    public JournalConfig(
            boolean featuresSet,
            long features,
            boolean protocolFeaturesSet,
            long protocolFeatures,
            boolean memoryTableSet,
            List<JournalMemoryRegion> memoryTable,
            List<QueueConfig> queues) {
        this(featuresSet, features, protocolFeaturesSet, protocolFeatures, memoryTableSet, memoryTable, queues, null);
    }

    /**
     * @param queueIndex a virtqueue index
     * @return its configuration, or null if it is not configured
     */
    public QueueConfig queue(int queueIndex) {
        for (QueueConfig q : queues) {
            if (q.queueIndex() == queueIndex) {
                return q;
            }
        }
        return null;
    }
}
