package io.vhostd.shm.virtnvme;

import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.INT_LE;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.LONG_LE;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SHORT_LE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Both roles over one region in one thread: the executor is the instance {@code format} returns, the submitter is a
 * second instance from {@code attach}, as in two processes.
 */
@Timeout(10)
class VirtNvmeQueuePairTest {
    private static final int QPAIR_ID = 7;
    private static final int NSID = 3;
    private static final int[] NO_INTS = new int[0];
    private static final long[] NO_LONGS = new long[0];

    private final Arena arena = Arena.ofShared();
    private final List<Submission> submissions = new ArrayList<>();
    private final List<Completion> completions = new ArrayList<>();

    private MemorySegment memory;
    private VirtNvmeQueuePair executor;
    private VirtNvmeQueuePair submitter;

    @AfterEach
    void closeArena() {
        arena.close();
    }

    /** What the executor saw, copied out of the flyweight. */
    record Submission(
            int opcode,
            int flags,
            int cid,
            int nsid,
            long offsetBytes,
            int lengthBytes,
            int segmentCount,
            int[] regionIds,
            long[] regionOffsets,
            int[] segmentLengths,
            int validateStatus) {}

    record Completion(int cid, int statusField, int result) {}

    @Test
    void shouldRoundTripWhenSegmentsInline() {
        open(8, 4);
        assertTrue(submitter.submit(
                VirtNvmeOpcodes.NVME_OPC_READ,
                0,
                5,
                NSID,
                1L << 40,
                12288,
                2,
                new int[] {1, 2},
                new long[] {4096, 1L << 33},
                new int[] {8192, 4096}));
        assertEquals(0, executor.submissionsPending(), "not visible before publish");
        submitter.publishSubmissions();
        assertEquals(1, executor.submissionsPending());

        assertEquals(1, executor.pollSubmissions(this::record, 16));
        final Submission s = submissions.getFirst();
        assertEquals(VirtNvmeOpcodes.NVME_OPC_READ, s.opcode());
        assertEquals(0, s.flags());
        assertEquals(5, s.cid());
        assertEquals(NSID, s.nsid());
        assertEquals(1L << 40, s.offsetBytes());
        assertEquals(12288, s.lengthBytes());
        assertEquals(2, s.segmentCount());
        assertArrayEquals(new int[] {1, 2}, s.regionIds());
        assertArrayEquals(new long[] {4096, 1L << 33}, s.regionOffsets());
        assertArrayEquals(new int[] {8192, 4096}, s.segmentLengths());
        assertEquals(VirtNvmeStatus.SUCCESS, s.validateStatus());
        assertEquals(1, VirtNvmeDescriptor.sqHeadAcquire(memory), "SQ head released after the batch");

        assertTrue(executor.postCompletion(5, VirtNvmeStatus.SUCCESS, 12288));
        final long cqe = VirtNvmeDescriptor.cqeOffset(8, 0);
        assertEquals(1, memory.get(SHORT_LE, cqe + VirtNvmeDescriptor.CQE_SQ_HEAD_OFFSET), "sqHead");
        assertEquals(QPAIR_ID, memory.get(SHORT_LE, cqe + VirtNvmeDescriptor.CQE_SQ_ID_OFFSET), "sqId");
        assertEquals(5, memory.get(SHORT_LE, cqe + VirtNvmeDescriptor.CQE_CID_OFFSET), "cid");
        assertEquals(1, memory.get(SHORT_LE, cqe + VirtNvmeDescriptor.CQE_STATUS_OFFSET), "status: SUCCESS, P=1");

        assertEquals(1, submitter.pollCompletions(this::record));
        assertEquals(List.of(new Completion(5, VirtNvmeStatus.SUCCESS, 12288)), completions);
        assertEquals(1, VirtNvmeDescriptor.cqHeadAcquire(memory), "CQ head released after the batch");
        assertEquals(0, submitter.pollCompletions(this::record));
    }

    @Test
    void shouldRoundTripWhenSegmentsIndirect() {
        open(4, 6);
        final int[] regionIds = {10, 11, 12, 13, 14};
        final long[] regionOffsets = {0, 512, 1024, 1536, 2048};
        final int[] lengths = {512, 512, 512, 512, 1024};
        assertTrue(submitter.submit(
                VirtNvmeOpcodes.NVME_OPC_WRITE,
                VirtNvmeDescriptor.SQE_FLAG_FUA_MASK,
                3,
                NSID,
                8192,
                3072,
                5,
                regionIds,
                regionOffsets,
                lengths));
        submitter.publishSubmissions();

        final long sqe = VirtNvmeDescriptor.sqeOffset(0);
        assertEquals(0x3, memory.get(VirtNvmeDescriptor.BYTE, sqe + VirtNvmeDescriptor.SQE_FLAGS_OFFSET), "FUA+ind");
        final long table4 = VirtNvmeDescriptor.indirectSegmentOffset(4, 6, 3, 4);
        assertEquals(14, memory.get(INT_LE, table4 + VirtNvmeDescriptor.SEGMENT_REGION_ID_OFFSET));
        assertEquals(1024, memory.get(INT_LE, table4 + VirtNvmeDescriptor.SEGMENT_LENGTH_BYTES_OFFSET));
        assertEquals(2048L, memory.get(LONG_LE, table4 + VirtNvmeDescriptor.SEGMENT_REGION_OFFSET_OFFSET));
        assertEquals(0, memory.get(INT_LE, sqe + VirtNvmeDescriptor.SQE_SEGMENTS_OFFSET), "inline slots zeroed");

        assertEquals(1, executor.pollSubmissions(this::record, 16));
        final Submission s = submissions.getFirst();
        assertEquals(0x3, s.flags());
        assertEquals(5, s.segmentCount());
        assertArrayEquals(regionIds, s.regionIds());
        assertArrayEquals(regionOffsets, s.regionOffsets());
        assertArrayEquals(lengths, s.segmentLengths());
        assertEquals(VirtNvmeStatus.SUCCESS, s.validateStatus());

        assertTrue(executor.postCompletion(3, VirtNvmeStatus.WRITE_FAULT, 0));
        assertEquals(1, submitter.pollCompletions(this::record));
        assertEquals(List.of(new Completion(3, VirtNvmeStatus.WRITE_FAULT, 0)), completions);
    }

    @Test
    void shouldRoundTripWhenNoSegments() {
        open(4, 1);
        assertTrue(submitter.submit(VirtNvmeOpcodes.NVME_OPC_FLUSH, 0, 0, NSID, 0, 0, 0, NO_INTS, NO_LONGS, NO_INTS));
        assertTrue(submitter.submit(
                VirtNvmeOpcodes.NVME_OPC_DATASET_MANAGEMENT, 0, 1, NSID, 4096, 1 << 20, 0, NO_INTS, NO_LONGS, NO_INTS));
        submitter.publishSubmissions();
        assertEquals(2, executor.pollSubmissions(this::record, 16));
        assertEquals(VirtNvmeStatus.SUCCESS, submissions.get(0).validateStatus());
        assertEquals(VirtNvmeStatus.SUCCESS, submissions.get(1).validateStatus());
        assertEquals(1 << 20, submissions.get(1).lengthBytes());
    }

    @Test
    void shouldFlipPhaseEachPassWhenThreeTimesDepthCommandsComplete() {
        final int depth = 4;
        open(depth, 2);
        for (int i = 0; i < 3 * depth; i++) {
            final int cid = i % depth;
            assertTrue(submitter.submit(
                    VirtNvmeOpcodes.NVME_OPC_WRITE,
                    0,
                    cid,
                    NSID,
                    i * 512L,
                    512,
                    1,
                    new int[] {1},
                    new long[] {i},
                    new int[] {512}));
            submitter.publishSubmissions();
            assertEquals(1, executor.pollSubmissions(this::record, 16));
            assertTrue(executor.postCompletion(cid, VirtNvmeStatus.SUCCESS, i));
            final long cqe = VirtNvmeDescriptor.cqeOffset(depth, i % depth);
            final int expectedPhase = (i / depth) % 2 == 0 ? 1 : 0;
            assertEquals(expectedPhase, memory.get(SHORT_LE, cqe + VirtNvmeDescriptor.CQE_STATUS_OFFSET) & 1);
            assertEquals(1, submitter.pollCompletions(this::record), "completion " + i);
            assertEquals(new Completion(cid, VirtNvmeStatus.SUCCESS, i), completions.getLast());
            assertEquals(i * 512L, submissions.getLast().offsetBytes());
        }
        assertEquals(3 * depth, completions.size());
    }

    @Test
    void shouldDeliverEveryCompletionWhenBatchesWrapTheCq() {
        final int depth = 8;
        open(depth, 2);
        int next = 0;
        for (int round = 0; round < 6; round++) {
            final int batch = 3 + round % 5;
            for (int cid = 0; cid < batch; cid++) {
                assertTrue(submitter.submit(
                        VirtNvmeOpcodes.NVME_OPC_FLUSH, 0, cid, NSID, 0, 0, 0, NO_INTS, NO_LONGS, NO_INTS));
            }
            submitter.publishSubmissions();
            assertEquals(batch, executor.pollSubmissions(c -> {}, depth));
            for (int cid = 0; cid < batch; cid++) {
                assertTrue(executor.postCompletion(cid, VirtNvmeStatus.SUCCESS, next + cid));
            }
            assertEquals(batch, submitter.pollCompletions(this::record));
            for (int cid = 0; cid < batch; cid++) {
                assertEquals(new Completion(cid, VirtNvmeStatus.SUCCESS, next + cid), completions.get(next + cid));
            }
            next += batch;
        }
    }

    @Test
    void shouldRoundTripWhenIndexesWrapPast2To32() {
        final int depth = 4;
        open(depth, 2);
        final int start = -6; // 0xFFFFFFFA: every index passes 2^32 during the test
        VirtNvmeDescriptor.sqTailRelease(memory, start);
        VirtNvmeDescriptor.sqHeadRelease(memory, start);
        VirtNvmeDescriptor.sqEventIndexRelease(memory, start);
        VirtNvmeDescriptor.cqHeadRelease(memory, start);
        VirtNvmeDescriptor.cqEventIndexRelease(memory, start);
        // each CQ slot carries the phase of the CQE posted there one pass before `start`, as a long-running CQ would
        for (int index = start - depth; index != start; index++) {
            final int phase = ((index >>> Integer.numberOfTrailingZeros(depth)) & 1) ^ 1;
            memory.set(
                    SHORT_LE,
                    VirtNvmeDescriptor.cqeOffset(depth, index & (depth - 1)) + VirtNvmeDescriptor.CQE_STATUS_OFFSET,
                    (short) phase);
        }
        executor = VirtNvmeQueuePair.attach(memory);
        submitter = VirtNvmeQueuePair.attach(memory);

        for (int i = 0; i < 5 * depth; i++) {
            final int cid = i % depth;
            assertTrue(submitter.submit(
                    VirtNvmeOpcodes.NVME_OPC_FLUSH, 0, cid, NSID, 0, 0, 0, NO_INTS, NO_LONGS, NO_INTS));
            submitter.publishSubmissions();
            assertEquals(1, executor.submissionsPending());
            assertEquals(1, executor.pollSubmissions(this::record, 16));
            assertTrue(executor.postCompletion(cid, VirtNvmeStatus.SUCCESS, i));
            assertEquals(1, submitter.pollCompletions(this::record), "completion " + i);
            assertEquals(new Completion(cid, VirtNvmeStatus.SUCCESS, i), completions.getLast());
        }
        assertEquals(start + 5 * depth, VirtNvmeDescriptor.sqHeadAcquire(memory));
        assertEquals(start + 5 * depth, VirtNvmeDescriptor.cqHeadAcquire(memory));
    }

    @Test
    void shouldRefuseSubmitWhenSqFull() {
        final int depth = 4;
        open(depth, 2);
        for (int cid = 0; cid < depth; cid++) {
            assertTrue(submitFlush(cid));
        }
        assertFalse(submitFlush(0), "full before publish");
        submitter.publishSubmissions();
        assertFalse(submitFlush(0), "full after publish");
        assertEquals(1, executor.pollSubmissions(this::record, 1));
        assertTrue(submitFlush(0), "one slot freed by the SQ head");
        assertFalse(submitFlush(1));
    }

    @Test
    void shouldAcceptSubmitWhenCidIsReusedWhileExecutorStillInItsBatch() {
        final int depth = 4;
        open(depth, 2);
        for (int cid = 0; cid < depth; cid++) {
            assertTrue(submitFlush(cid));
        }
        submitter.publishSubmissions();
        final List<Boolean> accepted = new ArrayList<>();
        assertEquals(
                1,
                executor.pollSubmissions(
                        command -> {
                            // complete the first command at once; the slave consumes it and reuses its CID while
                            // the executor has not returned from pollSubmissions: the SQ head already passed it
                            assertTrue(executor.postCompletion(command.cid(), VirtNvmeStatus.SUCCESS, 0));
                            assertEquals(1, submitter.pollCompletions(this::record));
                            accepted.add(submitFlush(command.cid()));
                        },
                        1));
        assertEquals(List.of(true), accepted);
    }

    @Test
    void shouldRefusePostWhenCqFull() {
        final int depth = 4;
        open(depth, 2);
        for (int cid = 0; cid < depth; cid++) {
            assertTrue(executor.postCompletion(cid, VirtNvmeStatus.SUCCESS, 0));
        }
        assertFalse(executor.postCompletion(0, VirtNvmeStatus.SUCCESS, 0));
        assertEquals(depth, submitter.pollCompletions(this::record));
        assertTrue(executor.postCompletion(0, VirtNvmeStatus.SUCCESS, 1));
        assertEquals(1, submitter.pollCompletions(this::record));
        assertEquals(new Completion(0, VirtNvmeStatus.SUCCESS, 1), completions.getLast());
    }

    @Test
    void shouldWakeExecutorOnlyWhenItArmedItsEventIndex() {
        open(8, 2);
        // a fresh SQ event index is 0: the first publication wakes an executor that has not polled yet
        submitFlush(0);
        assertTrue(submitter.publishSubmissions());
        assertFalse(submitter.publishSubmissions(), "nothing new");

        // busy executor: it polls and does not arm, so publications do not wake it
        assertEquals(1, executor.pollSubmissions(this::record, 16));
        submitFlush(1);
        assertFalse(submitter.publishSubmissions());
        submitFlush(2);
        assertFalse(submitter.publishSubmissions());
        assertEquals(2, executor.pollSubmissions(this::record, 16));

        // sleeping executor: it arms with nothing pending; the next publication wakes it, once
        assertFalse(executor.armSubmissionWakeup(), "nothing pending: may sleep");
        submitFlush(3);
        submitFlush(4);
        assertTrue(submitter.publishSubmissions(), "tail passed the event index");
        submitFlush(5);
        assertFalse(submitter.publishSubmissions(), "already woken, not polled yet");

        // arming while submissions are pending says "do not sleep"
        assertTrue(executor.armSubmissionWakeup());
        assertEquals(3, executor.pollSubmissions(this::record, 16));
        assertFalse(executor.armSubmissionWakeup());
    }

    @Test
    void shouldWakeSubmitterOnlyWhenItArmedItsEventIndex() {
        open(8, 2);
        // a fresh CQ event index is 0: the first completion wakes the submitter
        assertTrue(executor.postCompletion(0, VirtNvmeStatus.SUCCESS, 0));
        assertTrue(executor.publishCompletions());
        assertFalse(executor.publishCompletions(), "nothing new");

        // busy submitter: polls without arming
        assertEquals(1, submitter.pollCompletions(this::record));
        assertTrue(executor.postCompletion(1, VirtNvmeStatus.SUCCESS, 0));
        assertFalse(executor.publishCompletions());
        assertEquals(1, submitter.pollCompletions(this::record));

        // sleeping submitter
        assertFalse(submitter.armCompletionWakeup(), "nothing posted: may sleep");
        assertTrue(executor.postCompletion(2, VirtNvmeStatus.SUCCESS, 0));
        assertTrue(executor.postCompletion(3, VirtNvmeStatus.SUCCESS, 0));
        assertTrue(executor.publishCompletions(), "a CQE was posted at the event index");
        assertTrue(executor.postCompletion(4, VirtNvmeStatus.SUCCESS, 0));
        assertFalse(executor.publishCompletions(), "already woken, not polled yet");

        assertTrue(submitter.armCompletionWakeup(), "CQE posted: do not sleep");
        assertEquals(3, submitter.pollCompletions(this::record));
        assertFalse(submitter.armCompletionWakeup());
    }

    @Test
    void shouldConsumeAtMostMaxWhenPollingSubmissions() {
        open(8, 2);
        for (int cid = 0; cid < 5; cid++) {
            submitFlush(cid);
        }
        submitter.publishSubmissions();
        assertEquals(2, executor.pollSubmissions(this::record, 2));
        assertEquals(3, executor.submissionsPending());
        assertEquals(0, executor.pollSubmissions(this::record, 0));
        assertEquals(3, executor.pollSubmissions(this::record, 8));
        assertEquals(
                List.of(0, 1, 2, 3, 4),
                submissions.stream().map(Submission::cid).toList());
    }

    @Test
    void shouldCountCommandConsumedWhenHandlerThrows() {
        open(8, 2);
        submitFlush(0);
        submitFlush(1);
        submitter.publishSubmissions();
        assertThrows(
                IllegalStateException.class,
                () -> executor.pollSubmissions(
                        c -> {
                            throw new IllegalStateException("engine failure");
                        },
                        8));
        assertEquals(1, VirtNvmeDescriptor.sqHeadAcquire(memory));
        assertEquals(1, executor.pollSubmissions(this::record, 8));
        assertEquals(1, submissions.getFirst().cid());
    }

    @Test
    void shouldResumeWhenExecutorRestarts() {
        final int depth = 4;
        open(depth, 2);
        for (int cid = 0; cid < 3; cid++) {
            submitFlush(cid);
        }
        submitter.publishSubmissions();
        assertEquals(2, executor.pollSubmissions(this::record, 2));
        assertTrue(executor.postCompletion(0, VirtNvmeStatus.SUCCESS, 100));
        // the executor dies here: CID 1 was fetched, not completed; CID 2 is still in the SQ

        final VirtNvmeQueuePair restarted = VirtNvmeQueuePair.attach(memory);
        assertEquals(2, restarted.sqHeadIndex(), "resume point: SQEs below it were fetched by the dead executor");
        assertEquals(1, restarted.cqTailIndex(), "recovered from the phase tags");
        assertEquals(1, restarted.submissionsPending());
        assertEquals(1, restarted.pollSubmissions(this::record, 8));
        assertEquals(2, submissions.getLast().cid());
        assertTrue(restarted.postCompletion(2, VirtNvmeStatus.SUCCESS, 102));

        // the slave resubmits CID 1, which it still holds as outstanding without a CQE
        submitFlush(1);
        submitter.publishSubmissions();
        assertEquals(1, restarted.pollSubmissions(this::record, 8));
        assertTrue(restarted.postCompletion(1, VirtNvmeStatus.SUCCESS, 101));

        assertEquals(3, submitter.pollCompletions(this::record));
        assertEquals(
                List.of(
                        new Completion(0, VirtNvmeStatus.SUCCESS, 100),
                        new Completion(2, VirtNvmeStatus.SUCCESS, 102),
                        new Completion(1, VirtNvmeStatus.SUCCESS, 101)),
                completions);
    }

    @Test
    void shouldResubmitTheSameCommandWhenItsSlotWasReusedBeforeTheMasterRestart() {
        final int depth = 4;
        open(depth, 4);
        // CID 3: a 3-segment WRITE (indirect table) fetched by the executor and never completed
        assertTrue(submitThreeSegmentWrite(3, VirtNvmeDescriptor.SQE_FLAG_FUA_MASK));
        submitter.publishSubmissions();
        assertEquals(1, executor.pollSubmissions(this::record, 8));
        final Submission lost = submissions.getLast();
        assertEquals(0, submitter.submittedSqIndex(3));
        // 6 more commands on the other CIDs go round the SQ: slot 0 (CID 3's) is overwritten
        for (int i = 0; i < 6; i++) {
            submitFlush(i % 3);
            submitter.publishSubmissions();
            assertEquals(1, executor.pollSubmissions(this::record, 8));
            assertTrue(executor.postCompletion(i % 3, VirtNvmeStatus.SUCCESS, 0));
            executor.publishCompletions();
            assertEquals(1, submitter.pollCompletions(this::record));
        }
        // the executor dies; its successor resumes at SQ head 7, so CID 3 (index 0) was lost with it
        final VirtNvmeQueuePair restarted = VirtNvmeQueuePair.attach(memory);
        assertEquals(7, restarted.sqHeadIndex());
        assertTrue((submitter.submittedSqIndex(3) - restarted.sqHeadIndex()) < 0, "fetched by the dead master");
        assertTrue(submitter.resubmit(3));
        assertEquals(7, submitter.submittedSqIndex(3));
        submitter.publishSubmissions();
        assertEquals(1, restarted.pollSubmissions(this::record, 8));
        assertSameCommand(lost, submissions.getLast());
    }

    @Test
    void shouldRefuseResubmitWhenTheSqIsFull() {
        open(2, 2);
        submitFlush(0);
        submitFlush(1);
        assertFalse(submitter.resubmit(0), "two SQEs not fetched yet: no slot");
        assertThrows(IndexOutOfBoundsException.class, () -> submitter.resubmit(2));
    }

    @Test
    void shouldRefuseResubmitWhenTheCidWasNeverSubmittedHere() {
        open(4, 2);
        // a CID another process submitted (taken over in a rolling upgrade): no SQE copy here
        assertThrows(IllegalStateException.class, () -> submitter.resubmit(0));
    }

    @Test
    void shouldResubmitCommandAnotherSubmitterPutWhenItWasAdopted() {
        final int depth = 4;
        open(depth, 4);
        // the old slave: CID 2, a 3-segment WRITE, fetched and never completed; CID 1 completed after it
        assertTrue(submitThreeSegmentWrite(2, 0));
        submitFlush(1);
        submitter.publishSubmissions();
        assertEquals(2, executor.pollSubmissions(this::record, 8));
        final Submission lost = submissions.get(submissions.size() - 2);
        assertTrue(executor.postCompletion(1, VirtNvmeStatus.SUCCESS, 0));
        executor.publishCompletions();
        assertEquals(1, submitter.pollCompletions(this::record));

        // the new slave attaches at the published positions and takes CID 2 over (rolling upgrade)
        final VirtNvmeQueuePair next = VirtNvmeQueuePair.attach(memory);
        assertThrows(IllegalStateException.class, () -> next.resubmit(2), "no copy before the adoption");
        assertEquals(0, next.adoptSubmissions(new int[] {2}, NSID + 1), "another namespace");
        assertEquals(0, next.adoptSubmissions(new int[] {3}, NSID), "CID 3 was never submitted: a zero slot");
        assertEquals(1, next.adoptSubmissions(new int[] {2, 3}, NSID));
        assertEquals(0, next.submittedSqIndex(2));
        assertThrows(IndexOutOfBoundsException.class, () -> next.adoptSubmissions(new int[] {depth}, NSID));

        // the master dies; its successor resumes at SQ head 2: CID 2 (index 0) was fetched and lost
        final VirtNvmeQueuePair restarted = VirtNvmeQueuePair.attach(memory);
        assertTrue((next.submittedSqIndex(2) - restarted.sqHeadIndex()) < 0);
        assertTrue(next.resubmit(2));
        next.publishSubmissions();
        assertEquals(1, restarted.pollSubmissions(this::record, 8));
        assertSameCommand(lost, submissions.getLast());
    }

    @Test
    void shouldAdoptNewestSubmissionOfCidAndNothingOnceItsSlotWasOverwritten() {
        final int depth = 4;
        open(depth, 2);
        // CID 0 used twice: the first completed, the second is outstanding at index 2
        submitFlush(0);
        submitter.publishSubmissions();
        assertEquals(1, executor.pollSubmissions(this::record, 8));
        assertTrue(executor.postCompletion(0, VirtNvmeStatus.SUCCESS, 0));
        executor.publishCompletions();
        assertEquals(1, submitter.pollCompletions(this::record));
        submitFlush(1);
        submitFlush(0);
        submitter.publishSubmissions();
        VirtNvmeQueuePair next = VirtNvmeQueuePair.attach(memory);
        assertEquals(1, next.adoptSubmissions(new int[] {0}, NSID));
        assertEquals(2, next.submittedSqIndex(0), "the newest SQE with CID 0");

        // 4 more submissions of CID 1 go round the SQ: CID 0's slot is overwritten
        assertEquals(2, executor.pollSubmissions(this::record, 8));
        for (int i = 0; i < 4; i++) {
            assertTrue(executor.postCompletion(1, VirtNvmeStatus.SUCCESS, 0));
            executor.publishCompletions();
            submitter.pollCompletions(this::record);
            submitFlush(1);
            submitter.publishSubmissions();
            assertEquals(1, executor.pollSubmissions(this::record, 8));
        }
        final VirtNvmeQueuePair late = VirtNvmeQueuePair.attach(memory);
        assertEquals(0, late.adoptSubmissions(new int[] {0}, NSID));
        assertEquals(
                late.sqTailIndex() - depth - 1,
                late.submittedSqIndex(0),
                "older than the window: below any restarted master's SQ head, so lost, not waited for");
        assertThrows(IllegalStateException.class, () -> late.resubmit(0), "nothing to resubmit: IOERR as before");
    }

    @Test
    void shouldRecoverCqTailWhenExecutorRestartsAfterAWrap() {
        final int depth = 4;
        open(depth, 2);
        // 6 CQEs posted and consumed, then 3 posted and not consumed: the CQ tail is 9, in the third pass
        for (int i = 0; i < 6; i++) {
            assertTrue(executor.postCompletion(i % depth, VirtNvmeStatus.SUCCESS, i));
            assertEquals(1, submitter.pollCompletions(this::record));
        }
        for (int i = 6; i < 9; i++) {
            assertTrue(executor.postCompletion(i % depth, VirtNvmeStatus.SUCCESS, i));
        }
        final VirtNvmeQueuePair restarted = VirtNvmeQueuePair.attach(memory);
        assertEquals(9, restarted.cqTailIndex());
        assertEquals(6, submitter.cqHeadIndex());
        assertTrue(restarted.postCompletion(1, VirtNvmeStatus.SUCCESS, 9));
        assertFalse(restarted.postCompletion(2, VirtNvmeStatus.SUCCESS, 10), "4 unconsumed: full");
        assertEquals(4, submitter.pollCompletions(this::record));
        for (int i = 0; i < 10; i++) {
            assertEquals(i, completions.get(i).result());
        }
    }

    @Test
    void shouldResumeWhenSubmitterRestarts() {
        open(4, 2);
        submitFlush(0);
        submitFlush(1);
        submitter.publishSubmissions();
        submitFlush(2); // written, never published: lost with the slave
        assertTrue(executor.postCompletion(3, VirtNvmeStatus.SUCCESS, 0));

        final VirtNvmeQueuePair restarted = VirtNvmeQueuePair.attach(memory);
        assertEquals(2, restarted.sqTailIndex(), "resumes at the published tail");
        assertEquals(1, restarted.pollCompletions(this::record), "a CQE not consumed is delivered to the successor");
        assertTrue(restarted.submit(VirtNvmeOpcodes.NVME_OPC_FLUSH, 0, 2, NSID, 0, 0, 0, NO_INTS, NO_LONGS, NO_INTS));
        restarted.publishSubmissions();
        assertEquals(3, executor.pollSubmissions(this::record, 8));
        assertEquals(List.of(0, 1, 2), submissions.stream().map(Submission::cid).toList());
    }

    @Test
    void shouldRejectAttachWhenMagicWrong() {
        open(4, 2);
        memory.set(LONG_LE, VirtNvmeDescriptor.MAGIC_OFFSET, 0x1234L);
        final IllegalStateException e =
                assertThrows(IllegalStateException.class, () -> VirtNvmeQueuePair.attach(memory));
        assertTrue(e.getMessage().contains("magic"), e.getMessage());
    }

    @Test
    void shouldRejectAttachWhenNotReady() {
        memory = arena.allocate(VirtNvmeDescriptor.lengthBytes(4, 2), 64);
        assertThrows(IllegalStateException.class, () -> VirtNvmeQueuePair.attach(memory));
    }

    @Test
    void shouldRejectAttachWhenVersionMajorDiffers() {
        open(4, 2);
        VirtNvmeDescriptor.versionRelease(memory, 0x0002_0000);
        assertThrows(IllegalStateException.class, () -> VirtNvmeQueuePair.attach(memory));
    }

    @Test
    void shouldRejectAttachWhenMemoryTooShort() {
        open(4, 2);
        final MemorySegment shorter = memory.asSlice(0, VirtNvmeDescriptor.lengthBytes(4, 2) - 1);
        assertThrows(IllegalStateException.class, () -> VirtNvmeQueuePair.attach(shorter));
    }

    @Test
    void shouldRejectAttachWhenPeerWroteBadGeometry() {
        open(8, 2);
        for (final int depth : new int[] {0, 1, 6, 8192, -8}) {
            memory.set(INT_LE, VirtNvmeDescriptor.DEPTH_OFFSET, depth);
            final IllegalStateException e =
                    assertThrows(IllegalStateException.class, () -> VirtNvmeQueuePair.attach(memory));
            assertTrue(e.getMessage().contains("depth"), e.getMessage());
        }
        memory.set(INT_LE, VirtNvmeDescriptor.DEPTH_OFFSET, 8);
        for (final int maxSegments : new int[] {0, 1025, -1}) {
            memory.set(INT_LE, VirtNvmeDescriptor.MAX_SEGMENTS_OFFSET, maxSegments);
            assertThrows(IllegalStateException.class, () -> VirtNvmeQueuePair.attach(memory));
        }
        memory.set(INT_LE, VirtNvmeDescriptor.MAX_SEGMENTS_OFFSET, 2);
        memory.set(INT_LE, VirtNvmeDescriptor.QPAIR_ID_OFFSET, 0x10000);
        assertThrows(IllegalStateException.class, () -> VirtNvmeQueuePair.attach(memory));
        memory.set(INT_LE, VirtNvmeDescriptor.QPAIR_ID_OFFSET, QPAIR_ID);
        final VirtNvmeQueuePair attached = VirtNvmeQueuePair.attach(memory);
        assertEquals(8, attached.depth());
        assertEquals(2, attached.maxSegments());
        assertEquals(QPAIR_ID, attached.qpairId());
    }

    @Test
    void shouldRejectFormatWhenMemoryUnsuitable() {
        final MemorySegment small = arena.allocate(VirtNvmeDescriptor.lengthBytes(4, 2) - 64, 64);
        assertThrows(IllegalArgumentException.class, () -> VirtNvmeQueuePair.format(small, 0, 4, 2));
        final MemorySegment big = arena.allocate(VirtNvmeDescriptor.lengthBytes(4, 2) + 64, 64);
        assertThrows(IllegalArgumentException.class, () -> VirtNvmeQueuePair.format(big.asSlice(8), 0, 4, 2));
        assertThrows(
                IllegalArgumentException.class,
                () -> VirtNvmeQueuePair.format(MemorySegment.ofArray(new long[1024]), 0, 4, 2));
        assertThrows(IllegalArgumentException.class, () -> VirtNvmeQueuePair.format(big, 0, 6, 2));
        assertThrows(IllegalArgumentException.class, () -> VirtNvmeQueuePair.format(big, 0x10000, 4, 2));
    }

    @Test
    void shouldRejectSubmitWhenArgumentsOutOfRange() {
        open(4, 3);
        final int[] ids = {1, 2, 3, 4};
        final long[] offsets = {0, 0, 0, 0};
        final int[] lengths = {512, 512, 512, 512};
        final int read = VirtNvmeOpcodes.NVME_OPC_READ;
        assertThrows(
                IllegalArgumentException.class,
                () -> submitter.submit(read, 0, 4, NSID, 0, 512, 1, ids, offsets, lengths));
        assertThrows(
                IllegalArgumentException.class,
                () -> submitter.submit(read, 0, -1, NSID, 0, 512, 1, ids, offsets, lengths));
        assertThrows(
                IllegalArgumentException.class,
                () -> submitter.submit(read, 0, 0, NSID, 0, 2048, 4, ids, offsets, lengths));
        assertThrows(
                IllegalArgumentException.class,
                () -> submitter.submit(read, 0x8, 0, NSID, 0, 512, 1, ids, offsets, lengths));
        assertThrows(
                IllegalArgumentException.class,
                () -> submitter.submit(0x100, 0, 0, NSID, 0, 512, 1, ids, offsets, lengths));
        assertThrows(
                IllegalArgumentException.class,
                () -> submitter.submit(read, 0, 0, NSID, 0, 512, 2, ids, new long[1], lengths));
        assertEquals(0, executor.submissionsPending());
    }

    @Test
    void shouldRejectPostWhenArgumentsOutOfRange() {
        open(4, 2);
        assertThrows(IllegalArgumentException.class, () -> executor.postCompletion(0x10000, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> executor.postCompletion(0, 0x8000, 0));
        assertThrows(IllegalArgumentException.class, () -> executor.postCompletion(0, -1, 0));
    }

    @Test
    void shouldRejectSegmentAccessWhenIndexNotBelowSegmentCount() {
        open(4, 4);
        assertTrue(submitter.submit(
                VirtNvmeOpcodes.NVME_OPC_READ, 0, 1, NSID, 0, 512, 1, new int[] {1}, new long[] {0}, new int[] {512}));
        submitter.publishSubmissions();
        executor.pollSubmissions(
                command -> {
                    assertEquals(1, command.segmentRegionId(0));
                    assertThrows(IndexOutOfBoundsException.class, () -> command.segmentRegionId(1));
                    assertThrows(IndexOutOfBoundsException.class, () -> command.segmentLengthBytes(-1));
                    assertThrows(IndexOutOfBoundsException.class, () -> command.segmentRegionOffset(2));
                },
                8);
    }

    @Test
    void shouldRejectSegmentAccessWhenHostilePeerWroteSegmentCountAboveMaxSegments() {
        open(4, 4);
        // indirect, 5 segments with maxSegments 4: the fifth would read the next CID's table
        writeHostileSqe(0, VirtNvmeOpcodes.NVME_OPC_READ, VirtNvmeDescriptor.SQE_FLAG_SEGMENTS_INDIRECT_MASK, 1, 5);
        // inline, 3 segments: the third would read past the SQE
        writeHostileSqe(1, VirtNvmeOpcodes.NVME_OPC_READ, 0, 2, 3);
        // indirect, CID 9 with depth 4: its table would lie past the tables
        writeHostileSqe(2, VirtNvmeOpcodes.NVME_OPC_WRITE, VirtNvmeDescriptor.SQE_FLAG_SEGMENTS_INDIRECT_MASK, 9, 3);
        VirtNvmeDescriptor.sqTailRelease(memory, 3);
        final List<Integer> statuses = new ArrayList<>();
        assertEquals(
                3,
                executor.pollSubmissions(
                        command -> {
                            statuses.add(command.validate());
                            assertThrows(IllegalStateException.class, () -> command.segmentRegionId(0));
                            assertThrows(IllegalStateException.class, () -> command.segmentRegionOffset(0));
                            assertThrows(IllegalStateException.class, () -> command.segmentLengthBytes(0));
                        },
                        8));
        assertEquals(
                List.of(VirtNvmeStatus.INVALID_FIELD, VirtNvmeStatus.INVALID_FIELD, VirtNvmeStatus.INVALID_FIELD),
                statuses);
    }

    @Test
    void shouldAnswerProtocolErrorWhenHostilePeerWroteInvalidFields() {
        open(4, 4);
        writeHostileSqe(0, 0x7F, 0, 0, 0); // undefined opcode
        writeHostileSqe(1, VirtNvmeOpcodes.NVME_OPC_FLUSH, 0x80, 1, 0); // undefined flag bit
        writeHostileSqe(2, VirtNvmeOpcodes.NVME_OPC_FLUSH, 0, 2, 1); // flush with a segment
        writeHostileSqe(3, VirtNvmeOpcodes.NVME_OPC_READ, 0, 3, 0); // read without a segment
        VirtNvmeDescriptor.sqTailRelease(memory, 4);
        final List<Integer> statuses = new ArrayList<>();
        assertEquals(4, executor.pollSubmissions(command -> statuses.add(command.validate()), 8));
        assertEquals(
                List.of(
                        VirtNvmeStatus.INVALID_OPCODE,
                        VirtNvmeStatus.INVALID_FIELD,
                        VirtNvmeStatus.INVALID_FIELD,
                        VirtNvmeStatus.INVALID_FIELD),
                statuses);
    }

    @Test
    void shouldCarryDeallocateOnWriteZeroesAndRejectItOnOtherOpcodes() {
        open(4, 4);
        assertTrue(submitter.submit(
                VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES,
                VirtNvmeDescriptor.SQE_FLAG_DEALLOCATE_MASK,
                0,
                NSID,
                4096,
                8192,
                0,
                NO_INTS,
                NO_LONGS,
                NO_INTS));
        writeHostileSqe(1, VirtNvmeOpcodes.NVME_OPC_FLUSH, VirtNvmeDescriptor.SQE_FLAG_DEALLOCATE_MASK, 1, 0);
        writeHostileSqe(2, VirtNvmeOpcodes.NVME_OPC_READ, VirtNvmeDescriptor.SQE_FLAG_DEALLOCATE_MASK, 2, 1);
        VirtNvmeDescriptor.sqTailRelease(memory, 3);
        final List<Integer> statuses = new ArrayList<>();
        final List<Boolean> deallocate = new ArrayList<>();
        assertEquals(
                3,
                executor.pollSubmissions(
                        command -> {
                            statuses.add(command.validate());
                            deallocate.add(command.isDeallocate());
                        },
                        8));
        assertEquals(
                List.of(VirtNvmeStatus.SUCCESS, VirtNvmeStatus.INVALID_FIELD, VirtNvmeStatus.INVALID_FIELD), statuses);
        assertEquals(List.of(true, true, true), deallocate);
    }

    @Test
    void shouldAnswerInvalidFieldWhenSegmentLengthsDisagreeWithLength() {
        open(4, 4);
        assertTrue(submitter.submit(
                VirtNvmeOpcodes.NVME_OPC_WRITE,
                0,
                0,
                NSID,
                0,
                4096,
                2,
                new int[] {1, 1},
                new long[] {0, 4096},
                new int[] {512, 512}));
        submitter.publishSubmissions();
        executor.pollSubmissions(this::record, 8);
        assertEquals(VirtNvmeStatus.INVALID_FIELD, submissions.getFirst().validateStatus());
    }

    @Test
    void shouldRejectPollWhenHostilePeerMovedTailTooFar() {
        open(4, 2);
        VirtNvmeDescriptor.sqTailRelease(memory, 5);
        final IllegalStateException e =
                assertThrows(IllegalStateException.class, () -> executor.pollSubmissions(this::record, 8));
        assertTrue(e.getMessage().contains("peer corruption"), e.getMessage());
        VirtNvmeDescriptor.sqTailRelease(memory, -1);
        assertThrows(IllegalStateException.class, () -> executor.pollSubmissions(this::record, 8));
    }

    @Test
    void shouldRejectPostWhenHostilePeerMovedCqHeadPastTail() {
        open(4, 2);
        for (int cid = 0; cid < 4; cid++) {
            assertTrue(executor.postCompletion(cid, VirtNvmeStatus.SUCCESS, 0));
        }
        VirtNvmeDescriptor.cqHeadRelease(memory, 9);
        assertThrows(IllegalStateException.class, () -> executor.postCompletion(0, VirtNvmeStatus.SUCCESS, 0));
    }

    private void open(final int depth, final int maxSegments) {
        memory = arena.allocate(VirtNvmeDescriptor.lengthBytes(depth, maxSegments), 64);
        executor = VirtNvmeQueuePair.format(memory, QPAIR_ID, depth, maxSegments);
        submitter = VirtNvmeQueuePair.attach(memory);
        assertEquals(depth, submitter.depth());
        assertEquals(maxSegments, submitter.maxSegments());
        assertEquals(QPAIR_ID, submitter.qpairId());
    }

    /** A WRITE of 12 KiB at 1 MiB in three 4 KiB segments (an indirect segment table), as {@code cid}. */
    private boolean submitThreeSegmentWrite(final int cid, final int flags) {
        return submitter.submit(
                VirtNvmeOpcodes.NVME_OPC_WRITE,
                flags,
                cid,
                NSID,
                1L << 20,
                12288,
                3,
                new int[] {1, 2, 3},
                new long[] {0, 4096, 8192},
                new int[] {4096, 4096, 4096});
    }

    /** A resubmitted command is the lost one, field for field, and valid. */
    private static void assertSameCommand(final Submission lost, final Submission again) {
        assertEquals(lost.opcode(), again.opcode());
        assertEquals(lost.flags(), again.flags());
        assertEquals(lost.cid(), again.cid());
        assertEquals(lost.offsetBytes(), again.offsetBytes());
        assertEquals(lost.lengthBytes(), again.lengthBytes());
        assertArrayEquals(lost.regionIds(), again.regionIds());
        assertArrayEquals(lost.regionOffsets(), again.regionOffsets());
        assertArrayEquals(lost.segmentLengths(), again.segmentLengths());
        assertEquals(VirtNvmeStatus.SUCCESS, again.validateStatus());
    }

    private boolean submitFlush(final int cid) {
        return submitter.submit(VirtNvmeOpcodes.NVME_OPC_FLUSH, 0, cid, NSID, 0, 0, 0, NO_INTS, NO_LONGS, NO_INTS);
    }

    /** Writes an SQE as a hostile slave could, bypassing submit()'s checks; every segment is 512 bytes. */
    private void writeHostileSqe(final int slot, final int opcode, final int flags, final int cid, final int count) {
        final long sqe = VirtNvmeDescriptor.sqeOffset(slot);
        memory.set(VirtNvmeDescriptor.BYTE, sqe + VirtNvmeDescriptor.SQE_OPCODE_OFFSET, (byte) opcode);
        memory.set(VirtNvmeDescriptor.BYTE, sqe + VirtNvmeDescriptor.SQE_FLAGS_OFFSET, (byte) flags);
        memory.set(SHORT_LE, sqe + VirtNvmeDescriptor.SQE_CID_OFFSET, (short) cid);
        memory.set(INT_LE, sqe + VirtNvmeDescriptor.SQE_LENGTH_BYTES_OFFSET, 512 * count);
        memory.set(SHORT_LE, sqe + VirtNvmeDescriptor.SQE_SEGMENT_COUNT_OFFSET, (short) count);
        for (int i = 0; i < Math.min(count, VirtNvmeDescriptor.INLINE_SEGMENTS); i++) {
            memory.set(INT_LE, sqe + VirtNvmeDescriptor.SQE_SEGMENTS_OFFSET + i * 16L + 4, 512);
        }
    }

    private void record(final VirtNvmeQueuePair.Command command) {
        final int count = command.segmentCount();
        final int[] regionIds = new int[count];
        final long[] regionOffsets = new long[count];
        final int[] lengths = new int[count];
        for (int i = 0; i < count; i++) {
            regionIds[i] = command.segmentRegionId(i);
            regionOffsets[i] = command.segmentRegionOffset(i);
            lengths[i] = command.segmentLengthBytes(i);
        }
        submissions.add(new Submission(
                command.opcode(),
                command.flags(),
                command.cid(),
                command.nsid(),
                command.offsetBytes(),
                command.lengthBytes(),
                count,
                regionIds,
                regionOffsets,
                lengths,
                command.validate()));
    }

    private void record(final int cid, final int statusField, final int result) {
        completions.add(new Completion(cid, statusField, result));
    }
}
