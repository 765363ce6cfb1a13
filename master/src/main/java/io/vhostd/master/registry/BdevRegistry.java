package io.vhostd.master.registry;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.master.bdev.Bdev;
import io.vhostd.master.bdev.FileBdevs;
import io.vhostd.master.bdev.MemoryBdevs;
import io.vhostd.master.bdev.NvmeProbe;
import io.vhostd.master.config.BdevConfig;
import io.vhostd.master.config.ConfigException;
import io.vhostd.master.config.VhostdConfig;
import io.vhostd.master.engine.DeviceEngine;
import io.vhostd.master.engine.Engines;
import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.ErrnoException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.BiFunction;
import java.util.regex.Pattern;

/**
 * The bdevs the master runs: each open {@link Bdev} with its {@link DeviceEngine}, where it came from, and which
 * controller (if any) claims it. Bdevs come from the configuration ({@link #create} with {@code persist} false), from
 * RPC ({@code persist} true: also recorded in the {@link PersistentRegistry}) and, at start-up, from the registry
 * ({@link #restore}); a configured bdev wins a name conflict with a recorded one.
 *
 * <p>An {@code nvme} spec opens every namespace of the controller as its own bdev {@code <name>n<nsid>} and records
 * each namespace separately, so deleting one namespace's bdev is remembered as well.
 *
 * <p>Controllers (issue #5) {@link #claim} the bdev they serve; a claimed bdev cannot be deleted. Thread-safe: RPC
 * handlers run concurrently.
 */
public final class BdevRegistry implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(BdevRegistry.class.getName());

    /** Field of an nvme namespace's record: which namespace of the controller. */
    public static final String NSID_FIELD = "nsid";

    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9._:-]{1,64}");

    /**
     * One running bdev.
     *
     * @param bdev the open bdev
     * @param engine its device engine
     * @param source the spec it was opened from (for {@code nvme}: the controller's spec)
     * @param nsid the NVMe namespace id for an {@code nvme} bdev, else 0
     * @param persistent recorded in the registry (created over RPC)
     */
    public record Entry(Bdev bdev, DeviceEngine engine, BdevConfig source, int nsid, boolean persistent) {}

    private final int maxSegments;
    private final NvmeProbe probe;
    private final PersistentRegistry store;
    private final BiFunction<Bdev, Integer, DeviceEngine> engineFactory;
    private final Map<String, Entry> entries = new LinkedHashMap<>();
    private final Map<String, String> claims = new HashMap<>();

    /**
     * @param maxSegments most data segments of one VirtNvme command (sizes the engines)
     * @param probe finds NVMe controllers
     * @param store where RPC-created bdevs are recorded; null keeps nothing
     */
    public BdevRegistry(int maxSegments, NvmeProbe probe, PersistentRegistry store) {
        this(maxSegments, probe, store, Engines::create);
    }

    /** As above, with the engine chosen by {@code engineFactory(bdev, maxSegments)} (tests). */
    public BdevRegistry(
            int maxSegments,
            NvmeProbe probe,
            PersistentRegistry store,
            BiFunction<Bdev, Integer, DeviceEngine> engineFactory) {
        this.maxSegments = maxSegments;
        this.probe = probe;
        this.store = store;
        this.engineFactory = engineFactory;
    }

    /**
     * Opens the bdev(s) of {@code spec} and starts their engines.
     *
     * @param persist record them in the registry, so a restarted master recreates them
     * @return the new entries: one, or one per namespace for {@code nvme}
     * @throws BdevException NAME_IN_USE, BUSY (the file is already a bdev), NO_SUCH_DEVICE, DEVICE_ERROR, INVALID
     */
    public synchronized List<Entry> create(BdevConfig spec, boolean persist) throws BdevException {
        List<Entry> created = new ArrayList<>();
        if (spec.type().equals(BdevConfig.TYPE_NVME)) {
            NvmeProbe.NvmeController controller = findController(spec);
            if (controller.namespaces().isEmpty()) {
                throw new BdevException(
                        BdevException.Reason.NO_SUCH_DEVICE,
                        "NVMe controller " + controller.name() + " has no namespaces");
            }
            for (NvmeProbe.NvmeNamespace ns : controller.namespaces()) {
                checkFree(namespaceName(spec, ns.nsid()), ns.devicePath());
            }
            try {
                for (NvmeProbe.NvmeNamespace ns : controller.namespaces()) {
                    created.add(openNamespace(spec, controller, ns, persist));
                }
            } catch (BdevException | RuntimeException e) {
                for (Entry entry : created) {
                    if (entry.persistent()) {
                        store.removeBdev(entry.bdev().name());
                    }
                    discard(entry);
                }
                throw e;
            }
        } else {
            checkFree(spec.name(), spec.path());
            Bdev bdev = open(spec);
            created.add(start(bdev, spec, 0, persist));
        }
        return created;
    }

    /**
     * Recreates the bdevs recorded in the registry, skipping names already taken (by the configuration: it wins) and
     * records that no longer open (logged; the record stays, so the bdev comes back once its device does, and {@link
     * #delete} removes it). Records are untrusted input: each is validated as a config entry is.
     *
     * @return the names recreated
     */
    public synchronized List<String> restore() {
        List<String> restored = new ArrayList<>();
        if (store == null) {
            return restored;
        }
        for (ObjectNode record : store.bdevs()) {
            String name = record.path("name").asText("");
            int nsid = record.path(NSID_FIELD).asInt(0);
            ObjectNode specNode = record.deepCopy();
            specNode.remove(PersistentRegistry.SEQ_FIELD);
            specNode.remove(NSID_FIELD);
            specNode.remove("bdev_name");
            String bdevName = record.path("bdev_name").asText(name);
            if (entries.containsKey(bdevName)) {
                LOG.log(
                        System.Logger.Level.WARNING,
                        "registry: bdev " + bdevName + " is also in the configuration, which wins; the recorded one is"
                                + " not recreated");
                continue;
            }
            try {
                BdevConfig spec = VhostdConfig.parseBdev(specNode);
                if (spec.type().equals(BdevConfig.TYPE_NVME)) {
                    NvmeProbe.NvmeController controller = findController(spec);
                    NvmeProbe.NvmeNamespace ns = controller.namespaces().stream()
                            .filter(n -> n.nsid() == nsid)
                            .findFirst()
                            .orElseThrow(() -> new BdevException(
                                    BdevException.Reason.NO_SUCH_DEVICE,
                                    "NVMe controller " + controller.name() + " has no namespace " + nsid));
                    checkFree(bdevName, ns.devicePath());
                    openNamespace(spec, controller, ns, false);
                } else {
                    if (spec.path() != null && !Files.exists(Path.of(spec.path()))) {
                        // an image created over RPC that has disappeared is not re-created empty behind the user
                        throw new BdevException(BdevException.Reason.NO_SUCH_DEVICE, spec.path() + " no longer exists");
                    }
                    checkFree(spec.name(), spec.path());
                    start(open(spec), spec, 0, false);
                }
                // recreated from its record: it stays recorded
                entries.computeIfPresent(
                        bdevName, (k, e) -> new Entry(e.bdev(), e.engine(), e.source(), e.nsid(), true));
                restored.add(bdevName);
                LOG.log(System.Logger.Level.INFO, "registry: recreated bdev " + bdevName);
            } catch (ConfigException | BdevException | RuntimeException e) {
                LOG.log(
                        System.Logger.Level.ERROR,
                        "registry: cannot recreate bdev " + bdevName + " (kept in the registry; bdev_delete removes"
                                + " it): " + e.getMessage());
            }
        }
        return restored;
    }

    /**
     * Stops the bdev's engine, closes it and removes its record.
     *
     * @return true if a bdev was deleted; false if only a record of a bdev that could not be recreated was removed
     * @throws BdevException NO_SUCH_BDEV, or BUSY when a controller claims it
     */
    public synchronized boolean delete(String name) throws BdevException {
        Entry entry = entries.get(name);
        if (entry == null) {
            if (store != null && store.removeBdev(name)) {
                LOG.log(
                        System.Logger.Level.INFO,
                        "registry: removed the record of bdev " + name + " (it was not open)");
                return false;
            }
            throw new BdevException(BdevException.Reason.NO_SUCH_BDEV, "no bdev named '" + name + "'");
        }
        String claimedBy = claims.get(name);
        if (claimedBy != null) {
            throw new BdevException(
                    BdevException.Reason.BUSY, "bdev '" + name + "' is served by controller '" + claimedBy + "'");
        }
        entries.remove(name);
        if (store != null && entry.persistent()) {
            store.removeBdev(name);
        }
        discard(entry);
        LOG.log(System.Logger.Level.INFO, "bdev " + name + " deleted");
        return true;
    }

    /** The running bdev with this name. */
    public synchronized Optional<Entry> get(String name) {
        return Optional.ofNullable(entries.get(name));
    }

    /** The running bdevs in the order they were created. */
    public synchronized List<Entry> list() {
        return List.copyOf(entries.values());
    }

    /** The controller that claims {@code bdevName}, if any. */
    public synchronized Optional<String> claimedBy(String bdevName) {
        return Optional.ofNullable(claims.get(bdevName));
    }

    /**
     * Marks {@code bdevName} as served by {@code controller}: it cannot be deleted until {@link #release}d.
     *
     * @throws BdevException NO_SUCH_BDEV, or BUSY when another controller claims it
     */
    public synchronized Entry claim(String bdevName, String controller) throws BdevException {
        Entry entry = entries.get(bdevName);
        if (entry == null) {
            throw new BdevException(BdevException.Reason.NO_SUCH_BDEV, "no bdev named '" + bdevName + "'");
        }
        String other = claims.putIfAbsent(bdevName, controller);
        if (other != null && !other.equals(controller)) {
            throw new BdevException(
                    BdevException.Reason.BUSY, "bdev '" + bdevName + "' is served by controller '" + other + "'");
        }
        return entry;
    }

    /** Undoes {@link #claim}; does nothing if {@code controller} does not claim it. */
    public synchronized void release(String bdevName, String controller) {
        claims.remove(bdevName, controller);
    }

    /**
     * The kernel's NVMe controllers, each with the name it is attached under (null when none of its namespaces is a
     * bdev).
     */
    public synchronized List<ProbedController> probeNvme() throws IOException {
        List<ProbedController> out = new ArrayList<>();
        for (NvmeProbe.NvmeController c : probe.controllers()) {
            String attachedAs = null;
            for (Entry e : entries.values()) {
                if (e.bdev().type().equals(BdevConfig.TYPE_NVME)
                        && c.namespaces().stream()
                                .anyMatch(ns -> ns.devicePath().equals(e.bdev().path()))) {
                    attachedAs = e.bdev().nvmeController();
                }
            }
            out.add(new ProbedController(c, attachedAs));
        }
        return out;
    }

    /**
     * A probed NVMe controller.
     *
     * @param controller what sysfs says
     * @param attachedAs the {@code bdev_nvme_attach_controller} name its namespaces are bdevs under, or null
     */
    public record ProbedController(NvmeProbe.NvmeController controller, String attachedAs) {}

    /** Stops every engine and closes every bdev (records stay). */
    @Override
    public synchronized void close() {
        for (Entry entry : List.copyOf(entries.values())) {
            discard(entry);
        }
        entries.clear();
        claims.clear();
    }

    private static String namespaceName(BdevConfig spec, int nsid) {
        return spec.name() + "n" + nsid;
    }

    private NvmeProbe.NvmeController findController(BdevConfig spec) throws BdevException {
        try {
            Optional<NvmeProbe.NvmeController> found =
                    spec.device() != null ? probe.byDevice(spec.device()) : probe.byTraddr(spec.traddr());
            return found.orElseThrow(() -> new BdevException(
                    BdevException.Reason.NO_SUCH_DEVICE,
                    "no NVMe controller "
                            + (spec.device() != null ? "named " + spec.device() : "at traddr " + spec.traddr())));
        } catch (IOException e) {
            throw new BdevException(BdevException.Reason.DEVICE_ERROR, "cannot probe NVMe controllers: " + e, e);
        }
    }

    private Entry openNamespace(
            BdevConfig spec, NvmeProbe.NvmeController controller, NvmeProbe.NvmeNamespace ns, boolean persist)
            throws BdevException {
        String name = namespaceName(spec, ns.nsid());
        if (!NAME.matcher(name).matches()) {
            throw new BdevException(
                    BdevException.Reason.INVALID, "bdev name '" + name + "' is longer than 64 characters");
        }
        if (!Files.exists(Path.of(ns.devicePath()))) {
            throw new BdevException(
                    BdevException.Reason.NO_SUCH_DEVICE,
                    "NVMe " + controller.name() + " namespace " + ns.nsid() + ": " + ns.devicePath()
                            + " does not exist");
        }
        // the namespace's block device; a regular file where the device root is a test tree (NvmeProbe)
        Bdev opened = openPath(name, ns.devicePath(), 0, ns.blockSizeBytes(), spec.readOnly(), spec.direct());
        Bdev bdev = new Bdev(
                name,
                BdevConfig.TYPE_NVME,
                opened.path(),
                opened.fd(),
                opened.directFd(),
                opened.sizeBytes(),
                opened.blockSizeBytes(),
                opened.readOnly(),
                opened.blockDevice(),
                null,
                null,
                spec.name());
        LOG.log(
                System.Logger.Level.INFO,
                "nvme " + controller.name() + " (" + controller.model() + ", serial " + controller.serial()
                        + ") namespace " + ns.nsid() + " attached as bdev " + name);
        return start(bdev, spec, ns.nsid(), persist);
    }

    /** Refuses a taken name, or a path another bdev already has open. */
    private void checkFree(String name, String path) throws BdevException {
        if (entries.containsKey(name)) {
            throw new BdevException(BdevException.Reason.NAME_IN_USE, "a bdev named '" + name + "' exists");
        }
        if (path == null) {
            return;
        }
        Path real = realPath(path);
        for (Entry e : entries.values()) {
            if (e.bdev().path() != null && realPath(e.bdev().path()).equals(real)) {
                throw new BdevException(
                        BdevException.Reason.BUSY,
                        path + " is already open as bdev '" + e.bdev().name() + "'");
            }
        }
    }

    private static Path realPath(String path) {
        try {
            return Path.of(path).toRealPath();
        } catch (IOException e) {
            return Path.of(path).toAbsolutePath().normalize();
        }
    }

    private Bdev open(BdevConfig spec) throws BdevException {
        try {
            return switch (spec.type()) {
                case BdevConfig.TYPE_NULL ->
                    MemoryBdevs.createNull(spec.name(), spec.sizeBytes(), spec.blockSize(), spec.readOnly());
                case BdevConfig.TYPE_MALLOC ->
                    MemoryBdevs.createMalloc(spec.name(), spec.sizeBytes(), spec.blockSize(), spec.readOnly());
                case BdevConfig.TYPE_FILE, BdevConfig.TYPE_BLOCK -> {
                    if (spec.type().equals(BdevConfig.TYPE_BLOCK) && !Files.exists(Path.of(spec.path()))) {
                        throw new BdevException(BdevException.Reason.NO_SUCH_DEVICE, spec.path() + " does not exist");
                    }
                    Bdev bdev = openPath(
                            spec.name(),
                            spec.path(),
                            spec.sizeBytes(),
                            spec.blockSize(),
                            spec.readOnly(),
                            spec.direct());
                    if (spec.type().equals(BdevConfig.TYPE_BLOCK) && !bdev.blockDevice()) {
                        bdev.close();
                        throw new BdevException(BdevException.Reason.INVALID, spec.path() + " is not a block device");
                    }
                    yield bdev;
                }
                default -> throw new BdevException(BdevException.Reason.INVALID, "unknown bdev type " + spec.type());
            };
        } catch (ErrnoException e) {
            throw new BdevException(
                    BdevException.Reason.DEVICE_ERROR, "bdev " + spec.name() + ": " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new BdevException(BdevException.Reason.INVALID, e.getMessage(), e);
        }
    }

    /** {@link FileBdevs#open} with its failures as BdevExceptions. */
    private static Bdev openPath(
            String name, String path, long sizeBytes, int blockSize, boolean readOnly, boolean direct)
            throws BdevException {
        try {
            return FileBdevs.open(name, path, sizeBytes, blockSize, readOnly, direct);
        } catch (ErrnoException e) {
            BdevException.Reason reason =
                    e.errno() == Errno.ENOENT ? BdevException.Reason.NO_SUCH_DEVICE : BdevException.Reason.DEVICE_ERROR;
            throw new BdevException(reason, "bdev " + name + ": " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new BdevException(BdevException.Reason.INVALID, e.getMessage(), e);
        } catch (IOException e) {
            throw new BdevException(BdevException.Reason.DEVICE_ERROR, "bdev " + name + ": " + e, e);
        }
    }

    private Entry start(Bdev bdev, BdevConfig spec, int nsid, boolean persist) throws BdevException {
        DeviceEngine engine;
        try {
            engine = engineFactory.apply(bdev, maxSegments);
        } catch (RuntimeException e) {
            bdev.close();
            throw new BdevException(
                    BdevException.Reason.DEVICE_ERROR, "bdev " + bdev.name() + ": cannot start its engine: " + e, e);
        }
        Entry entry = new Entry(bdev, engine, spec, nsid, persist && store != null);
        entries.put(bdev.name(), entry);
        if (entry.persistent()) {
            ObjectNode record = VhostdConfig.bdevToTree(spec);
            if (nsid != 0) {
                record.put(NSID_FIELD, nsid);
                record.put("bdev_name", bdev.name());
            }
            store.putBdev(bdev.name(), record);
        }
        LOG.log(
                System.Logger.Level.INFO,
                "bdev " + bdev.name() + ": " + bdev.type() + (bdev.path() == null ? "" : " " + bdev.path()) + ", "
                        + bdev.sizeBytes() + " bytes, block " + bdev.blockSizeBytes()
                        + (bdev.direct() ? ", O_DIRECT when aligned" : "") + ", engine " + engine.kind());
        return entry;
    }

    /** Forgets the entry, stops its engine and closes the bdev; its record is the caller's business. */
    private void discard(Entry entry) {
        entries.remove(entry.bdev().name(), entry);
        entry.engine().close();
        entry.bdev().close();
    }
}
