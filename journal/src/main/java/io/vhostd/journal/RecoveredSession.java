package io.vhostd.journal;

import java.util.List;

/**
 * Everything {@link JournalRecovery#recover} found in a journal, validated, with torn updates resolved (spec §7).
 *
 * @param config the committed session configuration
 * @param queues one entry per started queue, by ascending index
 * @param configGeneration the configuration commit word the recovery read ({@link SessionJournal#open} checks that
 *     nothing wrote the region since)
 */
public record RecoveredSession(JournalConfig config, List<RecoveredQueue> queues, long configGeneration) {

    public RecoveredSession {
        queues = List.copyOf(queues);
    }

    /**
     * @param queueIndex a virtqueue index
     * @return its recovered state, or null if the queue is not started
     */
    public RecoveredQueue queue(int queueIndex) {
        for (RecoveredQueue q : queues) {
            if (q.queueIndex() == queueIndex) {
                return q;
            }
        }
        return null;
    }
}
