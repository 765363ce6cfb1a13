package io.vhostd.journal;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * An independent model of what a session journal must recover to: plain Java state updated per operation, without
 * any of the journal's encoding. Tests compare {@link JournalRecovery#recover} against it.
 */
final class JournalModel {
    boolean featuresSet;
    long features;
    boolean protocolFeaturesSet;
    long protocolFeatures;
    boolean memoryTableSet;
    List<JournalMemoryRegion> memoryTable = List.of();
    long generation;
    final TreeMap<Integer, Q> queues = new TreeMap<>();

    static final class Q {
        VringConfig vring;
        boolean started;
        boolean enabled;
        int startAvail;
        int startUsed;
        long startFetchSeq;
        int startBatchSeq;
        long fetchSeq;
        int avail;
        int appliedBatchSeq;
        int used;
        /** Slot to request, in fetch order. */
        LinkedHashMap<Integer, InflightRequest> inflight = new LinkedHashMap<>();

        Q copy() {
            Q q = new Q();
            q.vring = vring;
            q.started = started;
            q.enabled = enabled;
            q.startAvail = startAvail;
            q.startUsed = startUsed;
            q.startFetchSeq = startFetchSeq;
            q.startBatchSeq = startBatchSeq;
            q.fetchSeq = fetchSeq;
            q.avail = avail;
            q.appliedBatchSeq = appliedBatchSeq;
            q.used = used;
            q.inflight = new LinkedHashMap<>(inflight);
            return q;
        }
    }

    JournalModel copy() {
        JournalModel m = new JournalModel();
        m.featuresSet = featuresSet;
        m.features = features;
        m.protocolFeaturesSet = protocolFeaturesSet;
        m.protocolFeatures = protocolFeatures;
        m.memoryTableSet = memoryTableSet;
        m.memoryTable = memoryTable;
        m.generation = generation;
        for (Map.Entry<Integer, Q> e : queues.entrySet()) {
            m.queues.put(e.getKey(), e.getValue().copy());
        }
        return m;
    }

    // --- operations, mirroring SessionJournal's

    void features(long f) {
        featuresSet = true;
        features = f;
        generation++;
    }

    void protocolFeatures(long f) {
        protocolFeaturesSet = true;
        protocolFeatures = f;
        generation++;
    }

    void memoryTable(List<JournalMemoryRegion> table) {
        memoryTableSet = true;
        memoryTable = List.copyOf(table);
        generation++;
    }

    void vring(int q, VringConfig v) {
        queues.computeIfAbsent(q, k -> new Q()).vring = v;
        generation++;
    }

    void enabled(int q, boolean e) {
        queues.get(q).enabled = e;
        generation++;
    }

    void start(int q, int avail, int used) {
        Q s = queues.get(q);
        s.started = true;
        s.startAvail = avail;
        s.startUsed = used;
        s.startFetchSeq = s.fetchSeq;
        s.startBatchSeq = s.appliedBatchSeq;
        s.avail = avail;
        s.used = used;
        s.inflight.clear();
        generation++;
    }

    void stop(int q) {
        queues.get(q).started = false;
        generation++;
    }

    void fetch(int q, int slot, int avail, byte[] entry) {
        Q s = queues.get(q);
        s.fetchSeq = JournalDescriptor.nextSeq(s.fetchSeq);
        s.avail = avail & 0xFFFF;
        s.inflight.put(slot, new InflightRequest(slot, s.fetchSeq, entry == null ? new byte[0] : entry));
    }

    void skip(int q, int avail) {
        Q s = queues.get(q);
        s.fetchSeq = JournalDescriptor.nextSeq(s.fetchSeq);
        s.avail = avail & 0xFFFF;
    }

    void complete(int q, int[] slots, int newUsed) {
        Q s = queues.get(q);
        for (int slot : slots) {
            s.inflight.remove(slot);
        }
        s.appliedBatchSeq++;
        s.used = newUsed;
    }

    // --- comparison

    JournalConfig config() {
        List<QueueConfig> qs = new ArrayList<>();
        for (Map.Entry<Integer, Q> e : queues.entrySet()) {
            Q q = e.getValue();
            qs.add(new QueueConfig(
                    e.getKey(),
                    q.vring,
                    q.started,
                    q.enabled,
                    q.startAvail,
                    q.startUsed,
                    q.startFetchSeq,
                    q.startBatchSeq));
        }
        return new JournalConfig(
                featuresSet, features, protocolFeaturesSet, protocolFeatures, memoryTableSet, memoryTable, qs);
    }

    /** Asserts that a recovery equals this model (the recovery's diagnostics are not compared). */
    void assertRecovered(RecoveredSession r, String context) {
        assertEquals(config(), r.config(), context + ": config");
        assertEquals(generation, r.configGeneration(), context + ": config generation");
        List<Integer> started = new ArrayList<>();
        for (Map.Entry<Integer, Q> e : queues.entrySet()) {
            if (e.getValue().started) {
                started.add(e.getKey());
            }
        }
        assertEquals(
                started, r.queues().stream().map(RecoveredQueue::queueIndex).toList(), context + ": started");
        for (RecoveredQueue rq : r.queues()) {
            Q q = queues.get(rq.queueIndex());
            String c = context + ": queue " + rq.queueIndex();
            assertEquals(q.avail, rq.lastAvailIdx(), c + " last avail index");
            assertEquals(q.used, rq.usedIdx(), c + " used index");
            assertEquals(List.copyOf(q.inflight.values()), rq.inflight(), c + " in flight");
        }
    }
}
