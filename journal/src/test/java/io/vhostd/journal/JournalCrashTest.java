package io.vhostd.journal;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * "Crash at every journal step" (issue #4, spec §8): a scripted workload (configuration changes, fetches with and
 * without entry copies, a skipped avail entry, out-of-order completions in batches, a queue stop and restart, index
 * wrap-around) runs with a fault point that kills the writer after its Nth store, for every N. Recovery must then
 * return exactly the state after the last completed operation or after the operation in progress, the one the spec's
 * table names for the store the writer died after; a second crash during the repair must not change that; and the
 * workload, continued on the repaired journal, must end in the crash-free run's final state.
 */
@Timeout(60)
class JournalCrashTest {
    private static final int MAX_QUEUES = 4;
    private static final int MAX_SLOTS = 8;
    private static final int W = 1 << 15;

    private final Arena arena = Arena.ofConfined();

    @AfterEach
    void closeArena() {
        arena.close();
    }

    /** The fake guest: the used index each queue's ring shows. */
    static final class Guest implements GuestUsedIndex {
        final int[] used = new int[MAX_QUEUES];
        StoreObserver observer = StoreObserver.NONE;

        @Override
        public int read(int queueIndex, VringConfig vring, int committedUsedIdx, int pendingUsedIdx) {
            return used[queueIndex];
        }

        /** The used-index store into guest memory, observed like a journal store. */
        UsedPublisher publisher(int newUsedIdx) {
            return q -> {
                used[q] = newUsedIdx;
                observer.afterStore("guest.publish");
            };
        }
    }

    interface Op {
        void run(SessionJournal j, Guest g);

        void model(JournalModel m);

        /** The store after which recovery must return the post-operation state. */
        String commitField();
    }

    private static Op config(
            String name,
            java.util.function.Consumer<SessionJournal> run,
            java.util.function.Consumer<JournalModel> model) {
        return new Op() {
            @Override
            public void run(SessionJournal j, Guest g) {
                run.accept(j);
            }

            @Override
            public void model(JournalModel m) {
                model.accept(m);
            }

            @Override
            public String commitField() {
                return "config.commit";
            }

            @Override
            public String toString() {
                return name;
            }
        };
    }

    private static Op start(int q, int avail, int used) {
        return new Op() {
            @Override
            public void run(SessionJournal j, Guest g) {
                g.used[q] = used; // the ring's used->idx, which the slave reads when the queue starts
                j.recordQueueStarted(q, avail, used);
            }

            @Override
            public void model(JournalModel m) {
                m.start(q, avail, used);
            }

            @Override
            public String commitField() {
                return "config.commit";
            }

            @Override
            public String toString() {
                return "start q" + q;
            }
        };
    }

    private static Op fetch(int q, int slot, int avail, byte[] entry) {
        return new Op() {
            @Override
            public void run(SessionJournal j, Guest g) {
                if (entry == null) {
                    j.requestFetched(q, slot, avail);
                } else {
                    j.requestFetched(q, slot, avail, MemorySegment.ofArray(entry), 0);
                }
            }

            @Override
            public void model(JournalModel m) {
                m.fetch(q, slot, avail, entry);
            }

            @Override
            public String commitField() {
                return "fetch.commit";
            }

            @Override
            public String toString() {
                return "fetch q" + q + " slot " + slot;
            }
        };
    }

    private static Op skip(int q, int avail) {
        return new Op() {
            @Override
            public void run(SessionJournal j, Guest g) {
                j.availSkipped(q, avail);
            }

            @Override
            public void model(JournalModel m) {
                m.skip(q, avail);
            }

            @Override
            public String commitField() {
                return "fetch.commit";
            }

            @Override
            public String toString() {
                return "skip q" + q;
            }
        };
    }

    private static Op complete(int q, int newUsed, int... slots) {
        return new Op() {
            @Override
            public void run(SessionJournal j, Guest g) {
                j.requestsCompleted(q, slots, slots.length, newUsed, g.publisher(newUsed));
            }

            @Override
            public void model(JournalModel m) {
                m.complete(q, slots, newUsed);
            }

            @Override
            public String commitField() {
                return "guest.publish";
            }

            @Override
            public String toString() {
                return "complete q" + q + " " + java.util.Arrays.toString(slots);
            }
        };
    }

    /** The ring descriptors of a packed chain of {@code n} with buffer id {@code id}, as the guest wrote them. */
    static long[][] chain(int id, int n) {
        long[][] d = new long[n][];
        for (int k = 0; k < n; k++) {
            // addr, len, id, flags: VIRTQ_DESC_F_NEXT (1) on all but the last, AVAIL (bit 7) as the driver set it
            d[k] = new long[] {0x10000L * (id + 1) + 0x1000L * k, 512L * (k + 1), id, (k < n - 1 ? 1 : 0) | 0x80};
        }
        return d;
    }

    /** {@link #chain} as the journal's copies hold it (struct pvirtq_desc, little endian, chain order). */
    static byte[] copies(long[][] d) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(16 * d.length).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (long[] x : d) {
            b.putLong(x[0]).putInt((int) x[1]).putShort((short) x[2]).putShort((short) x[3]);
        }
        return b.array();
    }

    private static Op fetchChain(int q, int id, int n, int avail) {
        long[][] d = chain(id, n);
        return new Op() {
            @Override
            public void run(SessionJournal j, Guest g) {
                for (long[] x : d) {
                    j.packedDescriptorFetched(q, id, x[0], (int) x[1], (int) x[2], (int) x[3]);
                }
                j.packedChainFetched(q, id, avail);
            }

            @Override
            public void model(JournalModel m) {
                m.fetch(q, id, avail, copies(d));
            }

            @Override
            public String commitField() {
                return "fetch.commit";
            }

            @Override
            public String toString() {
                return "fetch chain q" + q + " id " + id + " of " + n;
            }
        };
    }

    private static byte[] entry(int seed) {
        byte[] e = new byte[64];
        for (int i = 0; i < e.length; i++) {
            e[i] = (byte) (seed * 31 + i);
        }
        return e;
    }

    static final JournalMemoryRegion R1 = new JournalMemoryRegion(0, 0x100000, 0x7f0000000000L, 0, 10);
    static final JournalMemoryRegion R2 = new JournalMemoryRegion(0x100000, 0x100000, 0x7f0010000000L, 0, 11);
    static final VringConfig Q0 = new VringConfig(8, false, 0x1000, 0x2000, 0x3000, 0, 0, 8, false);
    static final VringConfig Q1 = new VringConfig(4, false, 0x4000, 0x5000, 0x6000, 0, 0, 4, true);
    static final VringConfig Q1_MOVED = new VringConfig(4, false, 0x104000, 0x105000, 0x106000, 0x106000, 1, 4, true);
    static final VringConfig Q2 = new VringConfig(6, true, 0x7000, 0x8000, 0x9000, 0, 0, 6, false);
    /** Packed with entry copies (spec §6.5): one cell per ring descriptor, slot count = size. */
    static final VringConfig Q3 = new VringConfig(4, true, 0xa000, 0xb000, 0xc000, 0, 0, 4, true);

    static List<Op> workload() {
        List<Op> ops = new ArrayList<>();
        long f = (1L << 32) | (1L << 30);
        ops.add(config("features", j -> j.recordFeatures(f), m -> m.features(f)));
        ops.add(config("protocol features", j -> j.recordProtocolFeatures(0x1001), m -> m.protocolFeatures(0x1001)));
        ops.add(config("mem table [r1]", j -> j.recordMemoryTable(List.of(R1)), m -> m.memoryTable(List.of(R1))));
        ops.add(config("vring q0", j -> j.recordVring(0, Q0), m -> m.vring(0, Q0)));
        ops.add(config("vring q1", j -> j.recordVring(1, Q1), m -> m.vring(1, Q1)));
        ops.add(config("vring q2", j -> j.recordVring(2, Q2), m -> m.vring(2, Q2)));
        ops.add(config("enable q0", j -> j.recordVringEnabled(0, true), m -> m.enabled(0, true)));
        ops.add(start(0, 65533, 65533));
        ops.add(start(1, 0, 0));
        ops.add(start(2, W, W));
        ops.add(fetch(0, 3, 65534, null));
        ops.add(fetch(0, 0, 65535, null));
        ops.add(skip(0, 0));
        ops.add(fetch(0, 5, 1, null));
        ops.add(fetch(1, 2, 1, entry(1)));
        ops.add(fetch(1, 0, 2, entry(2)));
        ops.add(fetch(2, 4, 2 | W, null));
        ops.add(config("vring q3", j -> j.recordVring(3, Q3), m -> m.vring(3, Q3)));
        ops.add(start(3, W, W));
        ops.add(fetchChain(3, 2, 2, 2 | W));
        ops.add(fetchChain(3, 0, 1, 3 | W));
        ops.add(complete(3, 1 | W, 0)); // out of order: id 2 (older) stays; its ring position 0 now holds a used desc
        ops.add(skip(3, 0)); // one position consumed without a request: the avail wrap counter flips
        ops.add(fetchChain(3, 1, 1, 1));
        ops.add(complete(3, 0, 1, 2)); // 1 + 1 + 2 descriptors: the used wrap counter flips too
        ops.add(fetchChain(3, 3, 3, 0 | W)); // cells freed out of order are reused; avail wraps again
        ops.add(fetchChain(3, 2, 1, 1 | W));
        ops.add(complete(3, 3, 3));
        ops.add(complete(0, 65535, 5, 3)); // out of order: slot 0 was fetched between them and stays in flight
        ops.add(fetch(0, 3, 2, null)); // slot 3 reused
        ops.add(complete(1, 1, 0));
        ops.add(config(
                "mem table [r1, r2]", j -> j.recordMemoryTable(List.of(R1, R2)), m -> m.memoryTable(List.of(R1, R2))));
        ops.add(complete(0, 1, 0, 3)); // used index wraps 65535 -> 1
        ops.add(complete(2, 2 | W, 4));
        ops.add(fetch(0, 7, 3, null));
        ops.add(complete(1, 2, 2));
        ops.add(config("stop q1", j -> j.recordQueueStopped(1), m -> m.stop(1)));
        ops.add(config("vring q1 moved", j -> j.recordVring(1, Q1_MOVED), m -> m.vring(1, Q1_MOVED)));
        ops.add(start(1, 10, 10));
        ops.add(fetch(1, 1, 11, entry(3)));
        ops.add(config("enable q2", j -> j.recordVringEnabled(2, true), m -> m.enabled(2, true)));
        ops.add(config("features again", j -> j.recordFeatures(f | 1), m -> m.features(f | 1)));
        return ops;
    }

    private MemorySegment newJournal() {
        long length = JournalDescriptor.lengthBytes(MAX_QUEUES, MAX_SLOTS, 64);
        MemorySegment s = arena.allocate(length, 64);
        JournalDescriptor.format(s, MAX_QUEUES, MAX_SLOTS, 64);
        return s;
    }

    private MemorySegment copyOf(MemorySegment s) {
        MemorySegment c = arena.allocate(s.byteSize(), 64);
        c.copyFrom(s);
        return c;
    }

    /** The crash-free run: its final model and the number of stores it makes. */
    private record CleanRun(JournalModel finalModel, long stores, MemorySegment journal) {}

    private CleanRun cleanRun(List<Op> ops) {
        MemorySegment s = newJournal();
        Guest g = new Guest();
        CrashAfter counter = CrashAfter.never();
        g.observer = counter;
        SessionJournal j = SessionJournal.open(s, JournalRecovery.recover(s, g), counter);
        JournalModel m = new JournalModel();
        for (Op op : ops) {
            op.run(j, g);
            op.model(m);
            // the model agrees with the journal at every operation boundary
            m.assertRecovered(JournalRecovery.recover(s, g), "clean run after " + op);
        }
        return new CleanRun(m, counter.stores(), s);
    }

    @Test
    void shouldRecoverPreOrPostStateWhenWriterDiesAfterEveryStore() {
        List<Op> ops = workload();
        CleanRun clean = cleanRun(ops);
        assertTrue(clean.stores() > 100, "the workload makes " + clean.stores() + " stores");
        int rolledForward = 0;
        int rolledBack = 0;
        int tornFetches = 0;
        for (long n = 1; n <= clean.stores(); n++) {
            MemorySegment s = newJournal();
            Guest g = new Guest();
            CrashAfter crash = new CrashAfter(n);
            g.observer = crash;
            JournalModel before = new JournalModel();
            int opIndex = -1;
            boolean post = false;
            SessionJournal j = SessionJournal.open(s, JournalRecovery.recover(s, g), crash);
            try {
                for (int i = 0; i < ops.size(); i++) {
                    opIndex = i;
                    crash.mark();
                    ops.get(i).run(j, g);
                    ops.get(i).model(before);
                }
                fail("no crash at store " + n + " of " + clean.stores());
            } catch (SimulatedCrash e) {
                post = crash.storedSinceMark(ops.get(opIndex).commitField());
            }
            Op op = ops.get(opIndex);
            JournalModel expected = before.copy();
            if (post) {
                op.model(expected);
            }
            String context = "crash after store " + n + " in '" + op + "' (" + (post ? "post" : "pre") + "-state)";
            RecoveredSession r = JournalRecovery.recover(s, g);
            expected.assertRecovered(r, context);
            for (RecoveredQueue q : r.queues()) {
                rolledForward += q.interruptedBatch() == BatchOutcome.ROLLED_FORWARD ? 1 : 0;
                rolledBack += q.interruptedBatch() == BatchOutcome.ROLLED_BACK ? 1 : 0;
                tornFetches += q.tornFetchSlot() >= 0 ? 1 : 0;
            }

            // a second crash anywhere in the repair leaves the same recoverable state
            for (long m = 1; ; m++) {
                MemorySegment again = copyOf(s);
                try {
                    SessionJournal.open(again, JournalRecovery.recover(again, g), new CrashAfter(m));
                    break;
                } catch (SimulatedCrash e) {
                    expected.assertRecovered(JournalRecovery.recover(again, g), context + ", repair crash " + m);
                }
            }

            // the workload continues on the repaired journal and ends where the crash-free run ended
            g.observer = StoreObserver.NONE;
            SessionJournal resumed = SessionJournal.open(s, r);
            expected.assertRecovered(JournalRecovery.recover(s, g), context + ", after repair");
            for (int i = post ? opIndex + 1 : opIndex; i < ops.size(); i++) {
                ops.get(i).run(resumed, g);
            }
            clean.finalModel().assertRecovered(JournalRecovery.recover(s, g), context + ", continued to the end");
        }
        assertTrue(
                rolledForward > 0 && rolledBack > 0 && tornFetches > 0,
                "every kind of torn update occurs: forward=" + rolledForward + " back=" + rolledBack + " torn fetches="
                        + tornFetches);
    }
}
