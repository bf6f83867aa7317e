# Heroku runs .profile.d/*.sh at dyno start. The apt buildpack (Aptfile: espeak-ng) unpacks
# packages under /app/.apt and puts its bin/ and lib/ on PATH and LD_LIBRARY_PATH, but espeak-ng
# looks for its voice data at the compiled-in /usr/lib/<arch>/espeak-ng-data: point it there.
for d in "$HOME"/.apt/usr/lib/*/espeak-ng-data; do
  if [ -d "$d" ]; then export ESPEAK_DATA_PATH="${d%/espeak-ng-data}"; fi
done
