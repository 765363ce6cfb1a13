package io.vhostd.master.config;

import java.io.Serial;

/**
 * A configuration problem. The message is {@code <key path>: <problem>}, e.g. {@code bdevs[1].name: duplicate name
 * 'disk0'}; for problems not tied to one key (an unreadable file, a YAML syntax error) it is the problem alone, with
 * the line and column when known.
 */
public final class ConfigException extends Exception {
    @Serial
    private static final long serialVersionUID = 1L;

    private final String keyPath;
    private final String problem;

    /**
     * @param keyPath where the problem is ({@code controllers[0].socket}); empty for the whole file
     * @param problem what is wrong
     */
    public ConfigException(String keyPath, String problem) {
        super(keyPath.isEmpty() ? problem : keyPath + ": " + problem);
        this.keyPath = keyPath;
        this.problem = problem;
    }

    public ConfigException(String keyPath, String problem, Throwable cause) {
        this(keyPath, problem);
        initCause(cause);
    }

    /** The key path ({@code bdevs[0].size_bytes}), or empty when the problem concerns the whole file. */
    public String keyPath() {
        return keyPath;
    }

    /** The problem without the key path. */
    public String problem() {
        return problem;
    }
}
