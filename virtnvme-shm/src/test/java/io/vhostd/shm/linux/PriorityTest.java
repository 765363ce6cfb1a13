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
    void shouldFailWhenThreadDoesNotExist() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> Priority.niceOf(Integer.MAX_VALUE));
        assertEquals(Errno.ESRCH, e.errno());
    }
}
