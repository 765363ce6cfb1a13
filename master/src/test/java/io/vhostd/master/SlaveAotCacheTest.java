package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(10)
class SlaveAotCacheTest {
    @TempDir
    Path dir;

    private List<String> command(Path jar, String... options) {
        List<String> cmd = new java.util.ArrayList<>(List.of("/usr/bin/java"));
        cmd.addAll(List.of(options));
        cmd.addAll(List.of("-cp", jar.toString()));
        return cmd;
    }

    @Test
    void shouldKeepTheKeyWhenOnlySystemPropertiesDiffer() throws Exception {
        Path jar = Files.writeString(dir.resolve("a.jar"), "jar");
        String key = SlaveAotCache.key(command(jar, "-Xms16m", "-XX:+UseG1GC"));
        assertEquals(key, SlaveAotCache.key(command(jar, "-Xms16m", "-Dvhostd.fault.x=1", "-XX:+UseG1GC")));
        assertEquals(24, key.length());
        assertNotEquals(key, SlaveAotCache.key(command(jar, "-Xms16m", "-XX:+UseZGC")), "another collector");
        assertNotEquals(key, SlaveAotCache.key(command(jar, "-Xms16m")), "an option fewer");
    }

    @Test
    void shouldChangeTheKeyWhenTheJarChanges() throws Exception {
        Path jar = Files.writeString(dir.resolve("a.jar"), "jar");
        Files.setLastModifiedTime(jar, FileTime.fromMillis(1_000_000));
        String key = SlaveAotCache.key(command(jar));
        Files.writeString(jar, "jar");
        Files.setLastModifiedTime(jar, FileTime.fromMillis(2_000_000));
        assertNotEquals(key, SlaveAotCache.key(command(jar)), "rebuilt: another modification time");
        Files.setLastModifiedTime(jar, FileTime.fromMillis(1_000_000));
        assertEquals(key, SlaveAotCache.key(command(jar)), "the same file again");
        Files.writeString(jar, "jar2");
        Files.setLastModifiedTime(jar, FileTime.fromMillis(1_000_000));
        assertNotEquals(key, SlaveAotCache.key(command(jar)), "another size");
        assertNotEquals(key, SlaveAotCache.key(command(dir.resolve("b.jar"))), "another jar");
    }

    @Test
    void shouldRefuseACommandWithoutClassPathAtTheEnd() {
        assertThrows(
                IllegalArgumentException.class,
                () -> SlaveAotCache.key(List.of("/usr/bin/java", "-cp", "a.jar", "io.vhostd.slave.SlaveMain")));
    }

    @Test
    void shouldGiveTheCacheOptionOnlyWhenTheFileExists() throws Exception {
        Path jar = Files.writeString(dir.resolve("a.jar"), "jar");
        SlaveAotCache cache = new SlaveAotCache(dir.resolve("aot"));
        Files.createDirectories(cache.dir());
        List<String> cmd = command(jar, "-Xms16m");
        assertEquals(List.of(), cache.options(cmd));
        Path file = cache.fileFor(cmd);
        Files.writeString(file, "cache");
        Files.setLastModifiedTime(file, FileTime.fromMillis(1_000_000));
        assertEquals(List.of("-XX:AOTCache=" + file), cache.options(cmd));
        assertTrue(Files.getLastModifiedTime(file).toMillis() > 1_000_000, "used: its modification time is now");
        assertEquals(List.of(), new SlaveAotCache(null).options(cmd), "no cache directory");
    }

    @Test
    void shouldDropSystemPropertiesWhenBuildingTheTrainingCommand() {
        Path out = dir.resolve("slave-k.aot.tmp");
        assertEquals(
                List.of(
                        "/usr/bin/java",
                        "-Xms16m",
                        "-XX:+UseG1GC",
                        "-XX:AOTCacheOutput=" + out,
                        "-cp",
                        "/x/vhostd.jar",
                        SlaveAotCache.TRAINING_MAIN),
                SlaveAotCache.trainingCommand(
                        command(
                                Path.of("/x/vhostd.jar"),
                                "-Xms16m",
                                "-Dvhostd.fault.hello.slave=slave-3",
                                "-XX:+UseG1GC"),
                        out));
    }

    @Test
    void shouldKeepTheMostRecentlyUsedFilesWhenPruning() throws Exception {
        SlaveAotCache cache = new SlaveAotCache(dir);
        for (int i = 0; i < SlaveAotCache.KEEP + 2; i++) {
            Path f = Files.writeString(dir.resolve("slave-" + i + ".aot"), "c");
            Files.writeString(dir.resolve("slave-" + i + ".log"), "log");
            Files.setLastModifiedTime(f, FileTime.fromMillis(1_000_000L * (i + 1)));
        }
        Path other = Files.writeString(dir.resolve("notes.txt"), "kept");
        cache.prune();
        for (int i = 0; i < SlaveAotCache.KEEP + 2; i++) {
            boolean kept = i >= 2;
            assertEquals(kept, Files.exists(dir.resolve("slave-" + i + ".aot")), "slave-" + i + ".aot");
            assertEquals(kept, Files.exists(dir.resolve("slave-" + i + ".log")), "slave-" + i + ".log");
        }
        assertTrue(Files.exists(other));
    }

    @Test
    void shouldHaveNoCacheWhenOffOrTheDirectoryCannotBeCreated() throws Exception {
        assertNull(SlaveAotCache.open("off", dir).dir());
        Path configured = dir.resolve("a/b");
        SlaveAotCache cache = SlaveAotCache.open(configured.toString(), dir);
        assertEquals(configured, cache.dir());
        assertTrue(Files.isDirectory(configured));
        Path file = Files.writeString(dir.resolve("file"), "not a directory");
        assertNull(SlaveAotCache.open(file.resolve("x").toString(), dir).dir(), "cannot be created");
        assertFalse(Files.exists(file.resolve("x")));
    }
}
