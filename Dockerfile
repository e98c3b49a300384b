# s3-ingest: a two-stage image. The build stage compiles TypeScript with the full dependency tree;
# the runtime stage holds production dependencies only (`npm ci --omit=dev`) and `dist/`, runs as
# the image's non-root `node` user, and keeps DATA_DIR (journal, dead letters, local objects, lock)
# on a volume. Node 24 is the current LTS line ("Krypton", supported to April 2028); the tag is
# exact, so a rebuild gets the same runtime. test/e2e/production-install performs the runtime
# stage's steps on a clean copy, so a dependency that only works as a devDependency fails CI.
ARG NODE_IMAGE=node:24.13.0-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    DATA_DIR=/var/lib/s3-ingest \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
RUN mkdir -p /var/lib/s3-ingest && chown node:node /var/lib/s3-ingest
USER node
VOLUME ["/var/lib/s3-ingest"]
EXPOSE 8080
ENTRYPOINT ["node", "dist/main.js"]
CMD ["service"]
