/* replay — runs one fuzz target over stored inputs, without libFuzzer.
 *
 *   tests/fuzz/replay_NAME [FILE|DIR]...
 *
 * Linked with tests/fuzz/fuzz_NAME.c (its LLVMFuzzerTestOneInput), so that
 * `make check` runs every seed and every regression input under whatever
 * the build uses (gcc, ASan+UBSan in CI).  Without arguments it reads
 * $PHX_SRCDIR/tests/fuzz/corpus/NAME (which must exist) and
 * $PHX_SRCDIR/tests/fuzz/regressions/NAME (when it exists); NAME comes from
 * the program's name.  Each input goes in a buffer of exactly its size, so
 * that ASan sees a read past its end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#define REPLAY_FILE_MAX (16 * 1024 * 1024)

/* Reads path into a new buffer of exactly its size (NULL for empty). */
static int replay_read(const char *path, uint8_t **out, size_t *outlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_size > REPLAY_FILE_MAX) {
		close(fd);
		return -EFBIG;
	}
	size_t len = (size_t)st.st_size, n = 0;
	/* never NULL: an empty input is a pointer and a size of 0 */
	uint8_t *data = malloc(len ? len : 1);
	if (!data) {
		close(fd);
		return -ENOMEM;
	}
	while (n < len) {
		ssize_t r = read(fd, data + n, len - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(data);
			close(fd);
			return r < 0 ? -errno : -EIO;
		}
		n += (size_t)r;
	}
	close(fd);
	*out = data;
	*outlen = len;
	return 0;
}

static int replay_file(const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int r = replay_read(path, &data, &len);

	if (r < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(-r));
		return -1;
	}
	LLVMFuzzerTestOneInput(data, len);
	free(data);
	return 0;
}

static int replay_skip(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Every file of dir, in name order; the count, or -1 on an error. */
static long replay_dir(const char *dir)
{
	struct dirent **names;
	long count = 0;
	int n = scandir(dir, &names, replay_skip, alphasort);

	if (n < 0) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (count >= 0 && replay_file(path) == 0)
			count++;
		else
			count = -1;
		free(names[i]);
	}
	free(names);
	return count;
}

static long replay_path(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode))
		return replay_dir(path);
	return replay_file(path) == 0 ? 1 : -1;
}

/* NAME of ".../replay_NAME". */
static const char *replay_name(const char *argv0)
{
	const char *base = strrchr(argv0, '/');
	base = base ? base + 1 : argv0;
	if (strncmp(base, "replay_", 7) == 0 && base[7])
		return base + 7;
	return NULL;
}

/* The target's corpus, then its regressions when there are any. */
static int replay_default(const char *name)
{
	const char *src = getenv("PHX_SRCDIR");
	char corpus[4096], regr[4096];
	struct stat st;

	if (!src || !*src)
		src = ".";
	snprintf(corpus, sizeof(corpus), "%s/tests/fuzz/corpus/%s", src, name);
	snprintf(regr, sizeof(regr), "%s/tests/fuzz/regressions/%s", src, name);
	long nc = replay_path(corpus);
	long nr = stat(regr, &st) == 0 ? replay_path(regr) : 0;
	if (nc < 0 || nr < 0)
		return 1;
	if (nc == 0) {
		fprintf(stderr, "replay: %s: no inputs\n", corpus);
		return 1;
	}
	printf("replay %s: %ld corpus inputs, %ld regressions: ok\n", name, nc, nr);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		const char *name = replay_name(argv[0]);
		if (!name) {
			fprintf(stderr, "usage: replay_NAME [FILE|DIR]...\n");
			return 2;
		}
		return replay_default(name);
	}
	long total = 0;
	for (int i = 1; i < argc; i++) {
		long n = replay_path(argv[i]);
		if (n < 0)
			return 1;
		total += n;
	}
	printf("replay: %ld inputs: ok\n", total);
	return 0;
}
