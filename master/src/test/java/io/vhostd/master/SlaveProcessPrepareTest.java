package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.vhostd.master.engine.RegionTable;
import io.vhostd.shm.control.ControlChannel;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.linux.Socket;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The master's side of a rolling upgrade's prepare phase (issue #4, control-channel.md "Rolling upgrade"): how {@link
 * SlaveProcess} matches a slave's {@code controller_prepared} to the controller it prepared, over a real control
 * channel (no slave process).
 */
@Timeout(10)
class SlaveProcessPrepareTest {
    private ControlChannel slaveEnd;
    private SlaveProcess slave;

    @BeforeEach
    void setUp() {
        int[] pair = Socket.socketpair(Socket.SOCK_SEQPACKET);
        slaveEnd = new ControlChannel(pair[1]);
        Map<String, ControllerRuntime> controllers = new HashMap<>();
        // only the names matter here
        controllers.put("vb0", null);
        slave = new SlaveProcess(
                "slave-test", null, new ControlChannel(pair[0]), new RegionTable(), new FdCustody(), controllers);
        slave.start();
    }

    @AfterEach
    void tearDown() {
        slaveEnd.close();
        slave.reap();
    }

    @Test
    void shouldCompleteWithoutErrorWhenSlaveAnswersPrepared() throws Exception {
        slaveEnd.send(new ControlMessage.ControllerPrepared("vb0", null));

        assertNull(slave.prepared("vb0").get(5, TimeUnit.SECONDS));
    }

    @Test
    void shouldCompleteWithSlavesErrorWhenSlaveCouldNotPrepare() throws Exception {
        slaveEnd.send(new ControlMessage.ControllerPrepared("vb0", "cannot map the journal"));

        assertEquals("cannot map the journal", slave.prepared("vb0").get(5, TimeUnit.SECONDS));
    }

    @Test
    void shouldIgnoreAnswerWhenControllerIsUnknownOrUnnamed() throws Exception {
        slaveEnd.send(new ControlMessage.ControllerPrepared("nope", null));
        slaveEnd.send(new ControlMessage.ControllerPrepared(null, null));
        // a message behind them shows that both were handled (the reader handles messages in order)
        slaveEnd.send(new ControlMessage.ControllerPrepared("vb0", "marker"));

        assertEquals("marker", slave.prepared("vb0").get(5, TimeUnit.SECONDS));
        assertFalse(slave.prepared("nope").isDone(), "an unknown controller's answer is not taken");
    }

    @Test
    void shouldKeepReadingWhenPeerSendsMalformedPacket() throws Exception {
        byte[] bad =
                "{\"type\":\"controller_prepared\",\"name\":\"vb0\",\"error\":[]}".getBytes(StandardCharsets.UTF_8);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(bad.length);
            MemorySegment.copy(bad, 0, buf, ValueLayout.JAVA_BYTE, 0, bad.length);
            Socket.sendmsg(slaveEnd.fd(), buf, bad.length, new int[0]);
        }
        slaveEnd.send(new ControlMessage.ControllerPrepared("vb0", null));

        assertNull(slave.prepared("vb0").get(5, TimeUnit.SECONDS));
    }

    @Test
    void shouldFailPreparedWhenSlaveGoesAway() {
        var answer = slave.prepared("vb0");

        slaveEnd.close();

        ExecutionException e = assertThrows(ExecutionException.class, () -> answer.get(5, TimeUnit.SECONDS));
        assertEquals(IllegalStateException.class, e.getCause().getClass());
    }
}
