package io.vhostd.shm.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class PriorityTest {
    @Test
    void shouldSetTheCallingThreadsNiceValueOnlyWhenAskedOnItsTid() throws Exception {
        int mainTid = Priority.gettid();
        int before = Priority.niceOf(mainTid);
        CompletableFuture<int[]> seen = new CompletableFuture<>();
        // raising the nice value needs no privilege; a thread of its own so the test's thread keeps its priority
        Thread t = Thread.ofPlatform().start(() -> {
            int tid = Priority.gettid();
            boolean done = Priority.niceCurrentThread(Math.min(19, before + 3));
            seen.complete(new int[] {tid, done ? 1 : 0, Priority.niceOf(tid)});
        });
        int[] r = seen.get(5, TimeUnit.SECONDS);
        t.join();
        assertTrue(r[0] != mainTid, "another thread, another tid");
        assertEquals(1, r[1]);
        assertEquals(Math.min(19, before + 3), r[2]);
        assertEquals(before, Priority.niceOf(mainTid), "the other threads keep theirs");
    }

    @Test
    void shouldRunAtSchedFifoAndStartOrdinaryThreadsWhenFavouredThenGoBackWhenMadeOrdinary() throws Exception {
        CompletableFuture<Object[]> seen = new CompletableFuture<>();
        Thread t = Thread.ofPlatform().start(() -> {
            try {
                int tid = Priority.gettid();
                int own = Priority.niceOf(tid);
                String favoured = Priority.favourCurrentThread(own, 10);
                int policy = Priority.schedulerOf(tid);
                // a thread started by a favoured one is ordinary (SCHED_RESET_ON_FORK)
                int[] child = new int[2];
                Thread c = Thread.ofPlatform().start(() -> {
                    child[0] = Priority.schedulerOf(Priority.gettid());
                    child[1] = Priority.niceOf(Priority.gettid());
                });
                c.join();
                Priority.ordinaryCurrentThread(Math.min(19, own + 2));
                seen.complete(new Object[] {
                    favoured, policy, child[0], child[1], Priority.schedulerOf(tid), Priority.niceOf(tid), own
                });
            } catch (Throwable e) {
                seen.completeExceptionally(e);
            }
        });
        Object[] r = seen.get(5, TimeUnit.SECONDS);
        t.join();
        String favoured = (String) r[0];
        if (favoured.equals("SCHED_FIFO 10")) {
            assertEquals(Priority.SCHED_FIFO | Priority.SCHED_RESET_ON_FORK, (int) r[1]);
        } else {
            // no CAP_SYS_NICE: the nice value (unchanged: it asked for the one it had)
            assertTrue(favoured.startsWith("nice ") || favoured.equals("unchanged"), favoured);
            assertEquals(Priority.SCHED_OTHER, (int) r[1]);
        }
        assertEquals(Priority.SCHED_OTHER, (int) r[2], "the child is ordinary");
        assertTrue((int) r[3] >= 0, "the child's nice is not below 0");
        assertEquals(Priority.SCHED_OTHER, (int) r[4] & ~Priority.SCHED_RESET_ON_FORK, "ordinary again");
        assertEquals(Math.min(19, (int) r[6] + 2), (int) r[5], "at the nice value asked for");
    }

    @Test
    void shouldFailWithEinvalWhenPolicyUnknownAndEsrchWhenThreadMissing() {
        ErrnoException inval =
                assertThrows(ErrnoException.class, () -> Priority.setScheduler(Priority.gettid(), 77, 0));
        assertEquals(Errno.EINVAL, inval.errno());
        ErrnoException srch = assertThrows(
                ErrnoException.class, () -> Priority.setScheduler(Integer.MAX_VALUE, Priority.SCHED_OTHER, 0));
        assertEquals(Errno.ESRCH, srch.errno());
        assertEquals(
                Errno.ESRCH,
                assertThrows(ErrnoException.class, () -> Priority.schedulerOf(Integer.MAX_VALUE))
                        .errno());
    }

    @Test
    void shouldFailWhenThreadDoesNotExist() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> Priority.niceOf(Integer.MAX_VALUE));
        assertEquals(Errno.ESRCH, e.errno());
    }
}
