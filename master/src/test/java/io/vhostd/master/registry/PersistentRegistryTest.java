package io.vhostd.master.registry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(60)
class PersistentRegistryTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private static ObjectNode record(String name, String type) {
        return JSON.createObjectNode().put("name", name).put("type", type);
    }

    private static List<String> names(List<ObjectNode> records) {
        return records.stream().map(r -> r.path("name").asText()).toList();
    }

    @Test
    void shouldKeepRecordsInCreationOrderWhenReopened() throws IOException {
        Path file = dir.resolve("state").resolve("registry.dat");
        try (PersistentRegistry registry = PersistentRegistry.open(file)) {
            for (String name : new String[] {"zeta", "alpha", "mid", "gone"}) {
                registry.putBdev(name, record(name, "null"));
            }
            registry.putController("c0", record("c0", "vhost-user-blk"));
            assertTrue(registry.removeBdev("gone"));
            assertFalse(registry.removeBdev("gone"));
            // replacing a record keeps its place
            registry.putBdev("zeta", record("zeta", "malloc"));
        }
        assertTrue(Files.exists(file));

        try (PersistentRegistry reopened = PersistentRegistry.open(file)) {
            List<ObjectNode> bdevs = reopened.bdevs();
            assertEquals(List.of("zeta", "alpha", "mid"), names(bdevs));
            assertEquals("malloc", bdevs.get(0).path("type").asText());
            assertEquals(List.of("c0"), names(reopened.controllers()));
            reopened.putBdev("late", record("late", "null"));
            assertEquals(List.of("zeta", "alpha", "mid", "late"), names(reopened.bdevs()), "seq continues");
            assertTrue(reopened.removeController("c0"));
            assertEquals(List.of(), reopened.controllers());
        }
    }

    @Test
    void shouldRefuseSecondOpenWhenRegistryIsInUse() throws IOException {
        Path file = dir.resolve("registry.dat");
        try (PersistentRegistry first = PersistentRegistry.open(file)) {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> PersistentRegistry.open(file));
            assertTrue(e.getMessage().contains("in use by another master"), e.getMessage());
            first.putBdev("a", record("a", "null"));
        }
        try (PersistentRegistry again = PersistentRegistry.open(file)) {
            assertEquals(List.of("a"), names(again.bdevs()));
        }
    }

    @Test
    void shouldRecoverRecordsWhenLastMasterDiedWithRegistryOpen() throws IOException {
        Path file = dir.resolve("registry.dat");
        try (PersistentRegistry registry = PersistentRegistry.open(file)) {
            registry.putBdev("a", record("a", "null"));
        }
        assertEquals(
                PersistentRegistry.CLOSED,
                Files.readString(dir.resolve("registry.dat.lock")).strip());
        // what a master killed in the middle of an access leaves behind
        Files.writeString(dir.resolve("registry.dat.lock"), PersistentRegistry.OPEN + "\n");

        try (PersistentRegistry recovered = PersistentRegistry.open(file)) {
            assertEquals(
                    PersistentRegistry.CLOSED,
                    Files.readString(dir.resolve("registry.dat.lock")).strip(),
                    "open, at rest");
            assertEquals(List.of("a"), names(recovered.bdevs()));
        }
    }

    @Test
    void shouldLeaveTheLockFileAtRestBetweenAccessesWhileOpen() throws IOException {
        Path file = dir.resolve("registry.dat");
        Path lockFile = dir.resolve("registry.dat.lock");
        try (PersistentRegistry registry = PersistentRegistry.open(file)) {
            assertEquals(PersistentRegistry.CLOSED, Files.readString(lockFile).strip());
            registry.putBdev("a", record("a", "null"));
            registry.putController("c", record("c", "vhost-user-blk"));
            assertEquals(List.of("a"), names(registry.bdevs()));
            assertTrue(registry.removeController("c"));
            // a master killed now leaves a map that opens without recovery (issue #4: a fast master restart)
            assertEquals(PersistentRegistry.CLOSED, Files.readString(lockFile).strip());
        }
    }

    @Test
    void shouldFailWhenUsedAfterClose() throws IOException {
        PersistentRegistry registry = PersistentRegistry.open(dir.resolve("registry.dat"));
        registry.close();
        registry.close();
        assertThrows(IllegalStateException.class, registry::bdevs);
    }
}
