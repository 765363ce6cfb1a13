package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.vhostd.journal.JournalDescriptor;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import java.util.concurrent.TimeUnit;
import org.agrona.SemanticVersion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Issue #4 rolling upgrade: which slaves the master accepts by their hello (control-channel.md "Rolling upgrade"). */
@Timeout(value = 5, unit = TimeUnit.SECONDS)
class SlaveCompatibilityTest {

    private static ControlMessage.Hello hello(int protocol, int journal, int virtNvme) {
        return new ControlMessage.Hello(protocol, 4242, "test", journal, virtNvme);
    }

    @Test
    void shouldAcceptSlaveWhenVersionsEqualOrOnlyMinorDiffers() {
        assertNull(Master.incompatibility(
                hello(ControlMessage.PROTOCOL_VERSION, JournalDescriptor.VERSION, VirtNvmeDescriptor.VERSION)));
        int newerMinor =
                SemanticVersion.compose(JournalDescriptor.MAJOR_VERSION, JournalDescriptor.MINOR_VERSION + 1, 3);
        int newerNvmeMinor =
                SemanticVersion.compose(VirtNvmeDescriptor.MAJOR_VERSION, VirtNvmeDescriptor.MINOR_VERSION + 2, 0);
        assertNull(Master.incompatibility(hello(ControlMessage.PROTOCOL_VERSION, newerMinor, newerNvmeMinor)));
    }

    @Test
    void shouldRefuseSlaveWhenJournalMajorDiffers() {
        assertEquals(
                "incompatible journal version 2.0.0 (master " + SemanticVersion.toString(JournalDescriptor.VERSION)
                        + ")",
                Master.incompatibility(hello(
                        ControlMessage.PROTOCOL_VERSION,
                        SemanticVersion.compose(2, 0, 0),
                        VirtNvmeDescriptor.VERSION)));
    }

    @Test
    void shouldNameEveryDifferenceWhenProtocolAndVirtNvmeDiffer() {
        assertEquals(
                "incompatible control protocol 9 (master 1), VirtNvme version 0.9.0 (master "
                        + SemanticVersion.toString(VirtNvmeDescriptor.VERSION) + ")",
                Master.incompatibility(hello(9, JournalDescriptor.VERSION, SemanticVersion.compose(0, 9, 0))));
    }
}
