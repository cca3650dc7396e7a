/* pngstat: what a screenshot shows, for the report test. Prints "W H coloured" where coloured is the share of
 * pixels whose colour is clearly not grey (chart bars, lines and heatmaps; text and page are grey). */
#include <stdio.h>
#include <stdlib.h>
#include <stb/stb_image.h>

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: pngstat IMAGE\n"); return 2; }
    int w, h, n;
    unsigned char *p = stbi_load(argv[1], &w, &h, &n, 3);
    if (!p) { fprintf(stderr, "pngstat: %s: cannot read the image\n", argv[1]); return 1; }
    long coloured = 0;
    for (long i = 0; i < (long)w * h; i++) {
        int r = p[3 * i], g = p[3 * i + 1], b = p[3 * i + 2];
        int mx = r > g ? (r > b ? r : b) : (g > b ? g : b), mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
        coloured += mx - mn > 60;
    }
    printf("%d %d %.4f\n", w, h, (double)coloured / ((double)w * h));
    stbi_image_free(p);
    return 0;
}
