package io.vhostd.master.registry;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import net.openhft.chronicle.map.ChronicleMap;
import net.openhft.chronicle.map.ChronicleMapBuilder;

/**
 * The persistent part of the registry: one Chronicle Map file ({@code registry_path}, default {@code
 * <run_dir>/registry.dat}) from record key to a JSON object. Keys are {@code bdev/<name>} for bdevs created over RPC
 * and {@code controller/<name>} for controllers (issue #5). Each record carries a {@code seq} number, so the master
 * recreates objects in the order they were created.
 *
 * <p>The map is memory-mapped: a put is in the file (page cache) when it returns, so it survives the master's crash; it
 * is not synced to the disk per put (a host crash may lose the last changes). A lock file ({@code <file>.lock}, {@code
 * flock}) keeps a second master off the same registry and says whether the map is at rest ({@value #CLOSED}: closed,
 * or open with no access in progress) or was being accessed ({@value #OPEN}); a master that died in the middle of an
 * access leaves {@value #OPEN}, and then opening runs Chronicle Map's recovery ({@code recoverPersistedTo}, as the
 * master is the file's only user), which releases the segment locks the dead master may hold. Accesses are rare (RPC
 * create/delete, start-up), so a master that dies at any other moment leaves a map that opens without recovery: the
 * recovery's seconds are not added to a master restart (issue #4).
 *
 * <p>Chronicle Map needs the JVM flags of {@code vhostd.jvm.flags} (root pom, {@code bin/vhostd}, the jar's manifest);
 * its usage analytics and announcer are switched off here before its first use.
 *
 * <p>Thread-safe.
 */
public final class PersistentRegistry implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(PersistentRegistry.class.getName());
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Key prefix of bdev records. */
    public static final String BDEV_PREFIX = "bdev/";

    /** Key prefix of controller records (issue #5). */
    public static final String CONTROLLER_PREFIX = "controller/";

    /** Most records the file holds (Chronicle Map sizes its file for this). */
    public static final long MAX_ENTRIES = 4096;

    /** Field of every record: its creation order. */
    public static final String SEQ_FIELD = "seq";

    /** The lock file's content while a master has the registry open. */
    static final String OPEN = "open";

    /** The lock file's content once a master closed the registry. */
    static final String CLOSED = "closed";

    static {
        // JAVA-DEPS.md: without these Chronicle reports usage over the network and prints a banner
        if (System.getProperty("chronicle.analytics.disable") == null) {
            System.setProperty("chronicle.analytics.disable", "true");
        }
        if (System.getProperty("chronicle.announcer.disable") == null) {
            System.setProperty("chronicle.announcer.disable", "true");
        }
    }

    private final Path file;
    private final FileChannel lockChannel;
    private final FileLock lock;
    private final ChronicleMap<String, String> map;
    private long nextSeq;
    private boolean closed;

    private PersistentRegistry(Path file, FileChannel lockChannel, FileLock lock, ChronicleMap<String, String> map) {
        this.file = file;
        this.lockChannel = lockChannel;
        this.lock = lock;
        this.map = map;
        long max = 0;
        for (String value : map.values()) {
            max = Math.max(max, parse(value).path(SEQ_FIELD).asLong(0));
        }
        this.nextSeq = max + 1;
    }

    /**
     * Opens the registry file, creating it (and its directory) when missing.
     *
     * @throws IllegalStateException if another process holds the registry's lock
     * @throws IOException if the file cannot be created, read or recovered
     */
    public static PersistentRegistry open(Path file) throws IOException {
        Path absolute = file.toAbsolutePath();
        if (absolute.getParent() != null) {
            Files.createDirectories(absolute.getParent());
        }
        Path lockFile = absolute.resolveSibling(absolute.getFileName() + ".lock");
        FileChannel channel = FileChannel.open(lockFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        FileLock lock;
        try {
            lock = channel.tryLock();
        } catch (OverlappingFileLockException e) {
            lock = null;
        }
        if (lock == null) {
            channel.close();
            throw new IllegalStateException(
                    "registry " + absolute + " is in use by another master (" + lockFile + " is locked)");
        }
        try {
            String state = new String(Files.readAllBytes(lockFile), java.nio.charset.StandardCharsets.US_ASCII).strip();
            boolean recover = Files.exists(absolute) && !state.equals(CLOSED);
            writeState(channel, OPEN);
            ChronicleMapBuilder<String, String> builder = ChronicleMap.of(String.class, String.class)
                    .name("vhostd-registry")
                    .entries(MAX_ENTRIES)
                    .averageKey("controller/vhost-blk-controller-0")
                    .averageValueSize(384);
            if (recover) {
                LOG.log(
                        System.Logger.Level.WARNING,
                        "registry " + absolute + " was not closed by the last master: recovering it");
            }
            ChronicleMap<String, String> map = recover
                    ? builder.recoverPersistedTo(absolute.toFile(), true)
                    : builder.createPersistedTo(absolute.toFile());
            LOG.log(System.Logger.Level.DEBUG, "registry " + absolute + ": " + map.size() + " record(s)");
            // at rest until the next access
            writeState(channel, CLOSED);
            return new PersistentRegistry(absolute, channel, lock, map);
        } catch (IOException | RuntimeException e) {
            lock.release();
            channel.close();
            throw e instanceof IOException io ? io : new IOException("cannot open registry " + absolute + ": " + e, e);
        }
    }

    /** The registry file. */
    public Path file() {
        return file;
    }

    /** Stores (or replaces) the record of bdev {@code name}; sets its {@value #SEQ_FIELD} unless it has one. */
    public void putBdev(String name, ObjectNode record) {
        put(BDEV_PREFIX + name, record);
    }

    /** Removes the record of bdev {@code name}; returns false when there was none. */
    public boolean removeBdev(String name) {
        return remove(BDEV_PREFIX + name);
    }

    /** The bdev records, in creation order. */
    public List<ObjectNode> bdevs() {
        return records(BDEV_PREFIX);
    }

    /** Stores (or replaces) the record of controller {@code name} (issue #5). */
    public void putController(String name, ObjectNode record) {
        put(CONTROLLER_PREFIX + name, record);
    }

    /** Removes the record of controller {@code name}; returns false when there was none. */
    public boolean removeController(String name) {
        return remove(CONTROLLER_PREFIX + name);
    }

    /** The controller records, in creation order. */
    public List<ObjectNode> controllers() {
        return records(CONTROLLER_PREFIX);
    }

    private synchronized void put(String key, ObjectNode record) {
        checkOpen();
        busy();
        try {
            putAtRest(key, record);
        } finally {
            atRest();
        }
    }

    private void putAtRest(String key, ObjectNode record) {
        ObjectNode stored = record.deepCopy();
        if (!stored.has(SEQ_FIELD)) {
            String old = map.get(key);
            stored.put(
                    SEQ_FIELD,
                    old == null ? nextSeq++ : parse(old).path(SEQ_FIELD).asLong());
        }
        try {
            map.put(key, JSON.writeValueAsString(stored));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialise registry record " + key, e);
        }
    }

    private synchronized boolean remove(String key) {
        checkOpen();
        busy();
        try {
            return map.remove(key) != null;
        } finally {
            atRest();
        }
    }

    private synchronized List<ObjectNode> records(String prefix) {
        checkOpen();
        busy();
        try {
            return recordsAtRest(prefix);
        } finally {
            atRest();
        }
    }

    /** Marks an access in progress ({@value #OPEN}): a master that dies now needs recovery at the next open. */
    private void busy() {
        try {
            writeState(lockChannel, OPEN);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("registry " + file + ": cannot mark the lock file", e);
        }
    }

    /** The access is over: the map is consistent and no segment lock is held ({@value #CLOSED}). */
    private void atRest() {
        try {
            writeState(lockChannel, CLOSED);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "registry " + file + ": cannot mark the lock file: " + e);
        }
    }

    private List<ObjectNode> recordsAtRest(String prefix) {
        List<ObjectNode> out = new ArrayList<>();
        for (Map.Entry<String, String> e : map.entrySet()) {
            if (e.getKey().startsWith(prefix)) {
                ObjectNode record = parse(e.getValue());
                if (record.isEmpty()) {
                    LOG.log(System.Logger.Level.WARNING, "registry " + file + ": record " + e.getKey() + " unreadable");
                    continue;
                }
                out.add(record);
            }
        }
        out.sort(Comparator.comparingLong(r -> r.path(SEQ_FIELD).asLong()));
        return out;
    }

    private static void writeState(FileChannel channel, String state) throws IOException {
        channel.truncate(0);
        channel.write(java.nio.ByteBuffer.wrap((state + "\n").getBytes(java.nio.charset.StandardCharsets.US_ASCII)), 0);
        channel.force(false);
    }

    private static ObjectNode parse(String value) {
        try {
            return JSON.readTree(value) instanceof ObjectNode o ? o : JSON.createObjectNode();
        } catch (JsonProcessingException e) {
            return JSON.createObjectNode();
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("registry " + file + " is closed");
        }
    }

    /** Closes the map and releases the lock. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        map.close();
        try {
            writeState(lockChannel, CLOSED);
            lock.release();
            lockChannel.close();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "registry " + file + ": cannot release the lock: " + e);
        }
    }
}
