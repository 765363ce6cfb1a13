package io.vhostd.slave;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.management.ManagementFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(value = 30, unit = TimeUnit.SECONDS)
class YoungCollectionTest {

    @Test
    void shouldStopAllocatingWhenTheCollectorCountMoves() {
        AtomicLong asked = new AtomicLong();
        // the count moves at the fifth look (the first is the count before)
        assertTrue(YoungCollection.run(() -> asked.incrementAndGet() >= 5 ? 1 : 0, 1L << 30));
        assertTrue(asked.get() == 5, "looked " + asked.get() + " times");
    }

    @Test
    void shouldGiveUpAfterMaxBytesWhenNoCollectionRuns() {
        AtomicLong asked = new AtomicLong();
        assertFalse(YoungCollection.run(
                () -> {
                    asked.incrementAndGet();
                    return 7;
                },
                10L * YoungCollection.CHUNK_BYTES));
        assertTrue(asked.get() == 11, "looked " + asked.get() + " times");
    }

    @Test
    void shouldDoNothingWhenTheCountIsUnknown() {
        assertFalse(YoungCollection.run(() -> -1, 1L << 30));
    }

    @Test
    void shouldRunAYoungCollectionOfThisJvm() {
        // the test JVM's default collector (G1 here; Serial on a small machine) has a young collector
        var young = YoungCollection.youngCollector(ManagementFactory.getGarbageCollectorMXBeans());
        assertNotNull(young, "no young collector among " + ManagementFactory.getGarbageCollectorMXBeans());
        long before = young.getCollectionCount();
        assertTrue(YoungCollection.now());
        assertTrue(young.getCollectionCount() > before);
    }
}
