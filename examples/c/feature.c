/*
 * feature.c: an application that embeds the Test Pilot pilot through its C ABI
 * (docs/embedding.md, "C"; how to build and run it: README.md next to this file).
 *
 *   feature PROFILE TOWER PUBLIC_KEY [FEATURE [TOPIC]]
 *
 * Opens PROFILE against TOWER — a signed index file (a file:// tower, polled every second) or
 * an http(s):// tower (polled hourly: the tower's push stream brings changes at once) — with
 * the tower's PUBLIC_KEY, starts the agent, waits until a flight turns FEATURE on (default
 * "search.bar"), observes the event TOPIC (default "search.used") the flight waits for, then
 * waits until the flight has ended — completed, or killed on the tower — and its feature is
 * undone. Prints what happens; exits 0 when all of it did, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testpilot.h"

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int fail(const char *what, int rc) {
    fprintf(stderr, "feature: %s failed (%d): %s\n", what, rc, tp_last_error());
    return 1;
}

/* The feature's JSON ("null" when no flight sets it), or NULL on error; free it with tp_string_free. */
static char *feature_json(TpPilot *pilot, const char *id) {
    char *out = NULL;
    int rc = tp_pilot_feature(pilot, id, &out);
    if (rc != TP_OK) {
        fail("tp_pilot_feature", rc);
        return NULL;
    }
    return out;
}

/* Waits up to 30 s until the feature is set (want_set = 1) or unset (0). 0 when it came. */
static int wait_feature(TpPilot *pilot, const char *id, int want_set) {
    for (int i = 0; i < 600; i++) {
        char *v = feature_json(pilot, id);
        if (v == NULL) return 1;
        int set = strcmp(v, "null") != 0;
        if (set == want_set) {
            printf("feature %s is %s\n", id, v);
            tp_string_free(v);
            return 0;
        }
        tp_string_free(v);
        sleep_ms(50);
    }
    fprintf(stderr, "feature: %s was not %s within 30 s\n", id, want_set ? "set" : "undone");
    return 1;
}

/* Waits up to 30 s until the flight log says a flight completed or was killed, and was cleaned up. */
static int wait_ended(TpPilot *pilot) {
    for (int i = 0; i < 600; i++) {
        char *log = NULL;
        int rc = tp_pilot_log(pilot, &log);
        if (rc != TP_OK) return fail("tp_pilot_log", rc);
        const char *ended = strstr(log, "\"status\":\"completed\"") ? "completed"
                            : strstr(log, "\"status\":\"killed\"")  ? "killed"
                                                                       : NULL;
        if (ended && strstr(log, "\"cleanedUp\":true")) {
            printf("flight ended: %s\n", ended);
            printf("flight log: %s\n", log);
            tp_string_free(log);
            return 0;
        }
        tp_string_free(log);
        sleep_ms(50);
    }
    fprintf(stderr, "feature: the flight did not end within 30 s\n");
    return 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* a line at a time, also into a pipe */
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: feature PROFILE TOWER PUBLIC_KEY [FEATURE [TOPIC]]\n"
                        "  TOWER: a signed index file, or an http(s):// tower\n");
        return 2;
    }
    const char *feature = argc > 4 ? argv[4] : "search.bar";
    const char *topic = argc > 5 ? argv[5] : "search.used";
    for (int i = 1; i < 4; i++) {
        if (strpbrk(argv[i], "\"\\")) {
            fprintf(stderr, "feature: argument %d holds a quote or backslash; this example does not escape JSON\n", i);
            return 2;
        }
    }
    /* A tower pushes its changes: poll it hourly. A file has no stream: look every second. */
    int http = strncmp(argv[2], "http://", 7) == 0 || strncmp(argv[2], "https://", 8) == 0;
    char config[8192];
    int n = snprintf(config, sizeof config,
                     "{\"profile\": \"%s\", \"tower\": \"%s%s\", \"publicKey\": \"%s\", "
                     "\"person\": {\"channel\": \"release\", \"locale\": \"en-US\"}, \"poll\": \"%s\"}",
                     argv[1], http ? "" : "file://", argv[2], argv[3], http ? "1h" : "1s");
    if (n < 0 || (size_t)n >= sizeof config) {
        fprintf(stderr, "feature: the paths are too long\n");
        return 2;
    }

    TpPilot *pilot = NULL;
    int rc = tp_pilot_open(config, &pilot);
    if (rc != TP_OK) return fail("tp_pilot_open", rc);
    printf("opened the profile %s\n", argv[1]);

    int status = 1;
    rc = tp_pilot_start(pilot);
    if (rc != TP_OK) {
        fail("tp_pilot_start", rc);
        goto out;
    }
    printf("started the agent\n");

    if (wait_feature(pilot, feature, 1) != 0) goto out;

    rc = tp_pilot_observe(pilot, topic, NULL);
    if (rc != TP_OK) {
        fail("tp_pilot_observe", rc);
        goto out;
    }
    printf("observed %s\n", topic);

    if (wait_feature(pilot, feature, 0) != 0) goto out;
    if (wait_ended(pilot) != 0) goto out;
    status = 0;

out:
    rc = tp_pilot_stop(pilot);
    if (rc != TP_OK) {
        fail("tp_pilot_stop", rc);
        status = 1;
    } else {
        printf("stopped\n");
    }
    tp_pilot_close(pilot);
    printf(status == 0 ? "ok\n" : "failed\n");
    return status;
}
