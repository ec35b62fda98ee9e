# syntax=docker/dockerfile:1
# openclaw-ratelimit: build with dev dependencies, run with production ones only.
#   docker build -t openclaw-ratelimit .
#   docker run -p 8080:8080 -p 8081:8081 openclaw-ratelimit                 # the example rules
#   docker run -p 8080:8080 -p 8081:8081 -v $PWD/rules:/etc/openclaw-ratelimit:ro openclaw-ratelimit

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/ dist/
COPY lua/ lua/
COPY proto/ proto/
COPY examples/ examples/
# Default rules: the one example domain, at the path the CLI default below reads (a
# directory: every *.yaml in it is loaded and watched). Mount your own over it.
# Only openclaw.yaml: with a second domain, requests naming none would be a 400.
COPY examples/openclaw.yaml /etc/openclaw-ratelimit/openclaw.yaml

# The image's unprivileged user; nothing under /app is writable by it.
USER node
EXPOSE 8080 8081
# Listen on every interface inside the container.
ENV RL_HOST=0.0.0.0
# node is PID 1 and handles SIGTERM itself (drain, close Redis, exit 0): exec form,
# no shell in between. `docker run --init` adds a reaper if you ever need one.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.RL_HTTP_PORT || 8080) + '/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve", "--config", "/etc/openclaw-ratelimit/"]
