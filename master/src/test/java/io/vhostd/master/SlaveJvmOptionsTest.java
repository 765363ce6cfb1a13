package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The JVM options a slave starts with (issue #4): a small heap, Serial unless slave.java_opts chooses a collector. */
@Timeout(value = 10, unit = TimeUnit.SECONDS)
class SlaveJvmOptionsTest {

    @Test
    void shouldChooseSerialAndSmallHeapWhenJavaOptsAreEmpty() {
        assertEquals(List.of("-Xms16m", "-XX:+UseSerialGC"), Master.slaveJvmOptions(List.of()));
    }

    @Test
    void shouldPutConfiguredOptionsLastWhenTheyChooseNoCollector() {
        assertEquals(
                List.of("-Xms16m", "-XX:+UseSerialGC", "-Xmx1g", "-Dvhostd.control.nice=0"),
                Master.slaveJvmOptions(List.of("-Xmx1g", "-Dvhostd.control.nice=0")));
    }

    @Test
    void shouldLeaveCollectorToConfigWhenJavaOptsChooseOne() {
        // two collectors on one command line would stop the JVM ("Conflicting collector combinations")
        assertEquals(List.of("-Xms16m", "-XX:+UseZGC"), Master.slaveJvmOptions(List.of("-XX:+UseZGC")));
        assertEquals(
                List.of("-Xms16m", "-XX:+UseG1GC", "-Xmx64m"),
                Master.slaveJvmOptions(List.of("-XX:+UseG1GC", "-Xmx64m")));
    }

    @Test
    void shouldRecognizeCollectorChoicesWhenFilteringTheMastersOptions() {
        // the master runs with -XX:+UseZGC (bin/vhostd): passed on, it would conflict with the slave's collector
        assertEquals(true, Master.choosesCollector("-XX:+UseZGC"));
        assertEquals(true, Master.choosesCollector("-XX:-UseG1GC"));
        assertEquals(false, Master.choosesCollector("-XX:ZUncommitDelay=1"));
        assertEquals(false, Master.choosesCollector("-XX:+UseCompressedOops"));
    }

    @Test
    void shouldRecognizeArchiveOptionsWhenFilteringTheMastersOptions() {
        // the slaves' own cache comes from SlaveAotCache: a master's archive options would break it or the training
        for (String option : List.of(
                "-XX:AOTCache=/tmp/master.aot",
                "-XX:AOTMode=on",
                "-XX:AOTCacheOutput=/tmp/x.aot",
                "-XX:AOTConfiguration=/tmp/x.aotconf",
                "-XX:SharedArchiveFile=/tmp/a.jsa",
                "-XX:ArchiveClassesAtExit=/tmp/a.jsa",
                "-XX:+AutoCreateSharedArchive",
                "-Xshare:off")) {
            assertEquals(true, Master.choosesArchive(option), option);
        }
        assertEquals(false, Master.choosesArchive("-XX:+UseG1GC"));
        assertEquals(false, Master.choosesArchive("-Xss1m"));
    }
}
