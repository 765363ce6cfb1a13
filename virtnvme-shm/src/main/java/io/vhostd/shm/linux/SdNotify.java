package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.regex.Pattern;

/**
 * {@code sd_notify(3)} and {@code sd_watchdog_enabled(3)} of {@code <systemd/sd-daemon.h>}, implemented here over
 * {@link Socket#sendto} rather than bound from libsystemd (which a JDK host need not have).
 *
 * <p>The protocol (systemd's {@code sd_notify(3)}, "Notes"): the service manager passes the address of a {@link
 * Socket#SOCK_DGRAM} unix socket in {@code $NOTIFY_SOCKET} — an absolute path, or a name in the abstract namespace
 * written with a leading {@code '@'}. A notification is one datagram of newline-separated {@code NAME=value}
 * assignments, e.g. {@code "READY=1\nSTATUS=serving 2 controllers"}; the manager reads at most {@value
 * #MAX_MESSAGE_BYTES} bytes of it. {@code $WATCHDOG_USEC} carries the watchdog timeout in microseconds when {@code
 * WatchdogSec=} is set, and {@code $WATCHDOG_PID} the pid it is meant for; the service sends {@code WATCHDOG=1} more
 * often than that (half the timeout is what {@code sd_watchdog_enabled(3)} recommends).
 *
 * <p>Each {@link #notify} opens a socket, sends one datagram and closes it, as libsystemd does; the class holds no
 * descriptor and is safe to share between threads. The {@code vsock:} addresses of newer systemd versions are not
 * supported (the constructor refuses them).
 */
public final class SdNotify {
    /** Environment variable with the notification socket's address. */
    public static final String NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET";

    /** Environment variable with the watchdog timeout in microseconds. */
    public static final String WATCHDOG_USEC_ENV = "WATCHDOG_USEC";

    /** Environment variable with the pid the watchdog timeout is meant for. */
    public static final String WATCHDOG_PID_ENV = "WATCHDOG_PID";

    /** The variables of this protocol; a service removes them from the environment of the processes it starts. */
    public static final List<String> ENVIRONMENT = List.of(NOTIFY_SOCKET_ENV, WATCHDOG_USEC_ENV, WATCHDOG_PID_ENV);

    /** Start-up is finished: {@code Type=notify} services leave "activating" on it. */
    public static final String READY = "READY=1";

    /** The service is stopping. */
    public static final String STOPPING = "STOPPING=1";

    /** Watchdog keep-alive. */
    public static final String WATCHDOG = "WATCHDOG=1";

    /** Prefix of the free-form status line {@code systemctl status} shows. */
    public static final String STATUS_PREFIX = "STATUS=";

    /** systemd reads a notification into a buffer of {@code NOTIFY_BUFFER_MAX} = {@code PIPE_BUF} bytes. */
    public static final int MAX_MESSAGE_BYTES = 4096;

    /** Longest status text {@link #status} keeps, in characters. */
    public static final int MAX_STATUS_CHARS = 1024;

    /** {@code NAME=value}: systemd's assignment names are upper-case letters, digits and underscores. */
    private static final Pattern ASSIGNMENT = Pattern.compile("[A-Z][A-Z0-9_]*=[^\n]*");

    private final String notifySocket;
    private final String sunPath;

    /**
     * A notifier for the socket address {@code notifySocket}, as {@code $NOTIFY_SOCKET} spells it.
     *
     * @param notifySocket an absolute path, {@code "@name"} for the abstract namespace, or null or empty for none (then
     *     {@link #notify} does nothing)
     * @throws IllegalArgumentException for any other address (relative paths, {@code vsock:...}) or one longer than
     *     {@code sun_path}
     */
    public SdNotify(String notifySocket) {
        this.notifySocket = notifySocket == null ? "" : notifySocket;
        this.sunPath = sunPath(this.notifySocket);
    }

    /** A notifier for {@code $NOTIFY_SOCKET}; one that does nothing when it is unset. */
    public static SdNotify fromEnvironment() {
        return new SdNotify(System.getenv(NOTIFY_SOCKET_ENV));
    }

    /** A notifier that does nothing. */
    public static SdNotify disabled() {
        return new SdNotify(null);
    }

    /** Whether a service manager listens: {@code $NOTIFY_SOCKET} was given. */
    public boolean enabled() {
        return sunPath != null;
    }

    /** The address as given ({@code $NOTIFY_SOCKET}); empty when disabled. */
    public String notifySocket() {
        return notifySocket;
    }

    /**
     * Sends one notification of these assignments (see {@link #format}).
     *
     * @return false when disabled (nothing sent), true when the datagram was sent
     * @throws IllegalArgumentException when an assignment is malformed or the message too long
     * @throws ErrnoException when the send failed, e.g. {@code ECONNREFUSED} after the manager went away
     */
    public boolean notify(String... assignments) {
        byte[] message = format(assignments);
        if (sunPath == null) {
            return false;
        }
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_DGRAM | Socket.SOCK_CLOEXEC, 0);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(message.length);
            MemorySegment.copy(message, 0, data, JAVA_BYTE, 0, message.length);
            // blocking, as libsystemd's sd_notify: the manager's receive queue is drained continuously
            Socket.sendto(fd, data, message.length, Socket.MSG_NOSIGNAL, sunPath);
            return true;
        } finally {
            Unistd.close(fd);
        }
    }

    /**
     * One notification message: the assignments joined with {@code '\n'}, UTF-8.
     *
     * @throws IllegalArgumentException when there is no assignment, one is not {@code NAME=value} on one line (a
     *     newline would start another assignment), or the message exceeds {@value #MAX_MESSAGE_BYTES} bytes
     */
    public static byte[] format(String... assignments) {
        if (assignments.length == 0) {
            throw new IllegalArgumentException("a notification needs at least one assignment");
        }
        for (String a : assignments) {
            if (a == null || !ASSIGNMENT.matcher(a).matches()) {
                throw new IllegalArgumentException("not a NAME=value assignment on one line: " + a);
            }
        }
        byte[] message = String.join("\n", assignments).getBytes(StandardCharsets.UTF_8);
        if (message.length > MAX_MESSAGE_BYTES) {
            throw new IllegalArgumentException(
                    "notification of " + message.length + " bytes exceeds " + MAX_MESSAGE_BYTES);
        }
        return message;
    }

    /**
     * A {@code STATUS=} assignment for free text: line breaks become spaces (the protocol is line-based) and text
     * beyond {@value #MAX_STATUS_CHARS} characters is cut.
     */
    public static String status(String text) {
        String oneLine = text.replace("\r\n", " ").replace('\n', ' ').replace('\r', ' ');
        if (oneLine.length() > MAX_STATUS_CHARS) {
            oneLine = oneLine.substring(0, MAX_STATUS_CHARS);
        }
        return STATUS_PREFIX + oneLine;
    }

    /**
     * {@code sd_watchdog_enabled(3)}: the watchdog timeout this process must keep alive, in microseconds, or 0 when
     * there is none.
     *
     * @param watchdogUsec {@code $WATCHDOG_USEC}: a positive decimal number of microseconds, else no watchdog
     * @param watchdogPid {@code $WATCHDOG_PID}: when given, the watchdog is this process's only if it equals {@code pid}
     * @param pid this process's pid
     */
    public static long watchdogUsec(String watchdogUsec, String watchdogPid, long pid) {
        if (watchdogUsec == null || watchdogUsec.isEmpty()) {
            return 0;
        }
        long usec;
        try {
            usec = Long.parseLong(watchdogUsec);
        } catch (NumberFormatException e) {
            return 0;
        }
        if (usec <= 0) {
            return 0;
        }
        if (watchdogPid != null && !watchdogPid.isEmpty()) {
            try {
                if (Long.parseLong(watchdogPid) != pid) {
                    return 0;
                }
            } catch (NumberFormatException e) {
                return 0;
            }
        }
        return usec;
    }

    /** {@link #watchdogUsec(String, String, long)} of this process's environment. */
    public static long watchdogUsecFromEnvironment() {
        return watchdogUsec(
                System.getenv(WATCHDOG_USEC_ENV),
                System.getenv(WATCHDOG_PID_ENV),
                ProcessHandle.current().pid());
    }

    /** The {@code sun_path} form of a {@code $NOTIFY_SOCKET} address ({@code '@'} becomes NUL); null for none. */
    static String sunPath(String notifySocket) {
        if (notifySocket == null || notifySocket.isEmpty()) {
            return null;
        }
        String path;
        if (notifySocket.charAt(0) == '@') {
            if (notifySocket.length() < 2) {
                throw new IllegalArgumentException(NOTIFY_SOCKET_ENV + " names an empty abstract socket");
            }
            // sd_notify(3): "if the first character of $NOTIFY_SOCKET is '@', the string is understood as Linux
            // abstract namespace socket"
            path = '\0' + notifySocket.substring(1);
        } else if (notifySocket.charAt(0) == '/') {
            path = notifySocket;
        } else {
            throw new IllegalArgumentException(
                    NOTIFY_SOCKET_ENV + " is neither an absolute path nor an abstract socket: " + notifySocket);
        }
        int bytes = path.getBytes(StandardCharsets.UTF_8).length;
        if (bytes > (path.charAt(0) == '\0' ? Socket.SUN_PATH_BYTES : Socket.SUN_PATH_BYTES - 1)) {
            throw new IllegalArgumentException(NOTIFY_SOCKET_ENV + " does not fit sun_path: " + notifySocket);
        }
        return path;
    }
}
