package io.vhostd.slave;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The warm-up a slave runs before its hello (issue #4): it must take a scratch session over and release it. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SlaveWarmupTest {

    @Test
    void shouldTakeOverAndHandOverCarriedRequestsWhenRehearsingHandover() {
        // the adoption takes the scratch reads over as a rolling upgrade's carried requests; the release reports them
        assertEquals(SlaveWarmup.CARRIED, assertDoesNotThrow(SlaveWarmup::rehearseHandover));
    }

    @Test
    void shouldReportEveryStepWhenRun() {
        String summary = SlaveWarmup.run();
        assertTrue(summary.contains("classes in") && summary.contains("handover rehearsal in"), summary);
    }
}
