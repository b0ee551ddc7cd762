// `import SagaLane` gives a Swift host the whole runtime: every module beneath it.
@_exported import SagaLaneCoordinator
@_exported import SagaLaneDefinitions
@_exported import SagaLaneEventLoop
@_exported import SagaLaneJSON
@_exported import SagaLaneLanes
@_exported import SagaLaneLog
@_exported import SagaLaneSupport
@_exported import SagaLanePipes
@_exported import SagaLaneWire
